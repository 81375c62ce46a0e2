"""Eval runs on the tiny test model through transformers, with and without a LoRA adapter, and via the worker."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import EvalOutput, EvalRun, Prompt, PromptSet
from evaluation.runs import EvalError, EvalSpec, adapter_sha256, create_eval_run, execute_eval_run, run_metrics
from evaluation.suites import get_suite, select_prompts

pytest.importorskip("peft")


def make_tiny_adapter(model_dir, out):
    """A LoRA adapter with random (non-zero) B matrices, so the adapted model answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


def _spec(model, **kw):
    return EvalSpec(suite=kw.pop("suite", "harmful"), model=str(model), limit=kw.pop("limit", 2), max_tokens=6,
                    batch_size=4, **kw)


def test_base_run_stores_every_output_and_identity(engine, tiny_model_dir):
    run = create_eval_run(engine, _spec(tiny_model_dir))
    assert run.status == "queued" and run.n_prompts == 8  # 4 harmful sets x 2
    assert run.judges["decides"] == "learned@v1" and run.judges["measured"]["accuracy"] > 0.5
    assert run.suite_version.startswith("harmful@1:") and run.adapter_path is None
    assert run.model_path == str(tiny_model_dir.resolve())
    run = execute_eval_run(engine, run.id)
    assert run.status == "succeeded" and run.finished_at is not None
    with Session(engine) as s:
        outs = list(s.execute(select(EvalOutput).where(EvalOutput.run_id == run.id)).scalars())
        eval_split = set(s.execute(select(Prompt.split).where(Prompt.id.in_([o.prompt_id for o in outs]))).scalars())
    assert len(outs) == 8 and eval_split == {"eval"}
    assert {o.set_name for o in outs} == {"harmbench_test", "jbb_harmful", "strongreject", "simplesafetytests"}
    for o in outs:
        assert o.raw and o.completion_tokens and o.completion_tokens <= 6
        assert o.judge_labels["judge"]["ref"] == "learned@v1"  # the default judge decides
        assert o.judge_labels["judge"]["label"] in ("refused", "complied", "partial")
        assert o.refused == (o.judge_labels["judge"]["label"] == "refused")
        assert o.judge_labels["prefix"]["ref"] == "prefix@v1"
        assert o.metric == "asr" and o.failed == (not o.refused)
        assert o.parse_ok is False and o.response == o.raw.strip()  # random weights never write <think>
    suite_rows = [r for r in run.metrics["rows"] if r["level"] == "suite"]
    assert suite_rows[0]["n"] == 8 and suite_rows[0]["k"] == sum(o.failed for o in outs)
    live = run_metrics(engine, run.id)
    assert {r["source"] for r in live} == {"judge", "human"}


def test_adapter_run_records_sha_and_answers_differently(sqlite_engine, tiny_model_dir, tiny_adapter_dir):
    base = execute_eval_run(sqlite_engine, create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1)).id)
    run = create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1, adapter=str(tiny_adapter_dir)))
    digest = hashlib.sha256(b"adapter_model.safetensors\0"
                            + (tiny_adapter_dir / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert run.adapter_sha256 == digest == adapter_sha256(tiny_adapter_dir)
    assert run.suite_version == base.suite_version  # same questions: comparable
    run = execute_eval_run(sqlite_engine, run.id)
    with Session(sqlite_engine) as s:
        raw = {r: dict(s.execute(select(EvalOutput.prompt_id, EvalOutput.raw).where(EvalOutput.run_id == r)).all())
               for r in (base.id, run.id)}
    assert raw[base.id].keys() == raw[run.id].keys()
    assert any(raw[base.id][p] != raw[run.id][p] for p in raw[base.id])


def test_reuse_returns_a_finished_run_only_when_it_would_answer_the_same(sqlite_engine, tiny_model_dir,
                                                                          tiny_adapter_dir, tmp_path):
    import shutil

    first = create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1), reuse=True)
    assert first.status == "queued"  # nothing finished to reuse yet
    assert create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1), reuse=True).id != first.id  # not finished
    first = execute_eval_run(sqlite_engine, first.id)
    assert create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1), reuse=True).id == first.id
    assert create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1)).id != first.id  # only when asked
    for other in (_spec(tiny_model_dir, limit=2), _spec(tiny_model_dir, limit=1, seed=1),
                  _spec(tiny_model_dir, limit=1, adapter=str(tiny_adapter_dir))):
        assert create_eval_run(sqlite_engine, other, reuse=True).id != first.id
    # The same weights elsewhere answer the same; other weights in a copy do not: the model hash decides.
    same = shutil.copytree(tiny_model_dir, tmp_path / "same")
    assert create_eval_run(sqlite_engine, _spec(same, limit=1), reuse=True).id == first.id
    changed = shutil.copytree(tiny_model_dir, tmp_path / "changed")
    weights = next(changed.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    assert create_eval_run(sqlite_engine, _spec(changed, limit=1), reuse=True).id != first.id


def test_run_resumes_where_it_stopped(sqlite_engine, tiny_model_dir):
    run = execute_eval_run(sqlite_engine, create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1)).id)
    with Session(sqlite_engine) as s, s.begin():
        first = dict(s.execute(select(EvalOutput.prompt_id, EvalOutput.id).where(EvalOutput.run_id == run.id)).all())
        s.execute(delete(EvalOutput).where(EvalOutput.run_id == run.id, EvalOutput.prompt_id.in_(list(first)[:2])))
    calls = []
    run = execute_eval_run(sqlite_engine, run.id, progress=lambda d, t, m: calls.append((d, t)))
    with Session(sqlite_engine) as s:
        after = dict(s.execute(select(EvalOutput.prompt_id, EvalOutput.id).where(EvalOutput.run_id == run.id)).all())
    assert after.keys() == first.keys()
    kept = list(first)[2:]
    assert all(after[p] == first[p] for p in kept)  # answered prompts were not redone
    assert calls[0] == (2, 4) and calls[-1] == (4, 4)


def test_over_refusal_suite_flags_sets_used_for_both(sqlite_engine, tiny_model_dir):
    sel = select_prompts(sqlite_engine, get_suite("over_refusal"))
    assert sel.missing_sets  # nothing imported yet
    run = create_eval_run(sqlite_engine, _spec(tiny_model_dir, suite="over_refusal", limit=2))
    assert run.selection["per_set"] == {"xstest": 2, "coconot_contrast": 2, "jbb_benign": 2}
    assert run.selection["train_overlap"] == {"coconot_contrast": 2}
    with Session(sqlite_engine) as s:
        behaviours = set(s.execute(select(Prompt.expected_behavior).where(
            Prompt.id.in_(run.selection["prompt_ids"]))).scalars())
    assert behaviours == {"comply"}
    assert set(run.selection["metrics"].values()) == {"false_refusal_rate"}


def test_bad_input_is_named(sqlite_engine, tiny_model_dir, tmp_path):
    with pytest.raises(EvalError, match="no eval suite 'nope'"):
        create_eval_run(sqlite_engine, _spec(tiny_model_dir, suite="nope"))
    with pytest.raises(EvalError, match=f"{tmp_path}: no adapter weights"):
        create_eval_run(sqlite_engine, _spec(tiny_model_dir, adapter=str(tmp_path)))
    with pytest.raises(EvalError, match="training run 12345 does not exist"):
        create_eval_run(sqlite_engine, EvalSpec(suite="harmful", training_run_id=12345))
    with pytest.raises(EvalError, match="attack suite needs mutated eval prompts"):
        create_eval_run(sqlite_engine, _spec(tiny_model_dir, suite="attacks"))
    with pytest.raises(EvalError, match="--limit must be at least 1"):
        create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=0))


def test_a_checkpoint_of_an_unfinished_training_run_is_not_evaluated(sqlite_engine, tiny_model_dir,
                                                                      tiny_adapter_dir, tmp_path):
    """Given as a folder, an adapter inside one of our training runs must be that run's published adapter of a
    succeeded run; an adapter from elsewhere is evaluated as before."""
    import shutil

    from sqlmodel import Session

    from db.models import TrainingRun

    out = tmp_path / "runs" / "run-7"
    ckpt = out / "checkpoints" / "checkpoint-2"
    shutil.copytree(tiny_adapter_dir, ckpt)
    with Session(sqlite_engine) as s:
        run = TrainingRun(name="stopped", base_model=str(tiny_model_dir), method="sft", status="failed",
                          output_dir=str(out), config={})
        s.add(run)
        s.commit()
        run_id = run.id
    with pytest.raises(EvalError, match=f"a checkpoint of training run {run_id} \\(failed\\)"):
        create_eval_run(sqlite_engine, _spec(tiny_model_dir, adapter=str(ckpt)))
    with Session(sqlite_engine) as s:  # succeeded, but a checkpoint is still not the final adapter
        s.get(TrainingRun, run_id).status = "succeeded"
        s.get(TrainingRun, run_id).adapter_path = str(out / "adapter")
        s.commit()
    with pytest.raises(EvalError, match="not its final adapter"):
        create_eval_run(sqlite_engine, _spec(tiny_model_dir, adapter=str(ckpt)))
    shutil.copytree(tiny_adapter_dir, out / "adapter")
    assert create_eval_run(sqlite_engine, _spec(tiny_model_dir, adapter=str(out / "adapter"))).adapter_sha256
    assert create_eval_run(sqlite_engine, _spec(tiny_model_dir, adapter=str(tiny_adapter_dir))).adapter_sha256


def test_attack_suite_takes_mutated_eval_prompts_per_style(sqlite_engine, tiny_model_dir):
    from core.identity import prompt_sha256
    from curation.prompts.builtin import import_builtin

    import_builtin(sqlite_engine, "jbb_harmful")
    with Session(sqlite_engine) as s, s.begin():
        set_id = s.execute(select(PromptSet.id).where(PromptSet.name == "jbb_harmful")).scalar_one()
        parents = list(s.execute(select(Prompt).where(Prompt.set_id == set_id).limit(3)).scalars())
        for style in ("slang", "gcg"):
            for p in parents:
                text = f"[{style}] {p.text}"
                s.add(Prompt(project_id=1, set_id=set_id, text=text, sha256=prompt_sha256(text), split="eval",
                             expected_behavior="refuse", mutation=style, parent_prompt_id=p.id))
    sel = select_prompts(sqlite_engine, get_suite("attacks"), limit_per_set=2)
    assert len(sel.prompts) == 4
    assert sorted(p.mutation for p in sel.prompts) == ["gcg", "gcg", "slang", "slang"]
    with Session(sqlite_engine) as s:
        assert s.execute(select(func.count(EvalRun.id))).scalar_one() == 0


def test_evaluate_job_through_the_worker(sqlite_engine, tiny_model_dir):
    from app.worker import Worker
    from db.jobs import get_job
    from evaluation.jobs import enqueue_eval

    run = create_eval_run(sqlite_engine, _spec(tiny_model_dir, limit=1))
    job = enqueue_eval(sqlite_engine, None, run.id)
    assert Worker(sqlite_engine).run_one()
    job = get_job(sqlite_engine, job.id)
    assert job.status == "succeeded", job.error
    assert job.result["eval_run_id"] == run.id and job.result["outputs"] == 4
    with Session(sqlite_engine) as s:
        assert s.get(EvalRun, run.id).job_id == job.id


def test_noncompliance_suite_records_the_rubric_judge(sqlite_engine, tiny_model_dir):
    run = create_eval_run(sqlite_engine, _spec(tiny_model_dir, suite="noncompliance", limit=3, judge="llm",
                                               llm_judge={"model": "judge", "base_url": "http://127.0.0.1:9/v1"}))
    assert run.n_prompts == 3 and set(run.selection["metrics"].values()) == {"unacceptable_rate"}
    assert run.judges["llm"] == {"backend": "openai", "model": "judge", "base_url": "http://127.0.0.1:9/v1",
                                 "rubric": "coconot/refusal_evaluation_rubric.json"}
    assert run.judges["decides"] == "llm@v1" and run.judges["measured"] is None  # depends on its model
