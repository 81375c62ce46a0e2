"""LoRA SFT and DPO on the tiny local model, run by the worker in a subprocess (SQLite, CPU, a few steps)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from curation.export.snapshot import create_export
from db.jobs import enqueue, get_job
from tests.test_export import seed
from training import runs
from training.config import TrainConfig, build_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SMALL = {"max_steps": 3, "save_steps": 50, "logging_steps": 1}


def _export(engine, tmp_path, method: str, name: str | None = None):
    seed(engine, n=12)
    return create_export(engine, name or f"{method}-set", method, out_dir=tmp_path / "exports")


def _run_worker(engine):
    from app.worker import Worker

    return Worker(engine, heartbeat_s=1.0).run_one()


def _wait(cond, timeout=180.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _logits(model_dir, adapter=None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    ids = tok.apply_chat_template([{"role": "user", "content": "How do I pick a lock?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(input_ids=ids["input_ids"]).logits


def test_export_batches_go_through_trl_collators(sqlite_engine, tiny_model_dir, tmp_path):
    from datasets import load_dataset, load_from_disk

    from training.runner import build_trainer

    sft = _export(sqlite_engine, tmp_path, "sft")
    dpo = create_export(sqlite_engine, "dpo-set", "dpo", out_dir=tmp_path / "exports")
    for snap, cols in ((sft, ["messages"]), (dpo, ["prompt", "chosen", "rejected"])):
        _, cfg = build_config(snap.kind, "tiny", "test")
        for ds in (load_from_disk(str(Path(snap.path) / "hf"))["train"],
                   load_dataset("json", data_files=str(Path(snap.path) / "jsonl" / "train.jsonl"))["train"],
                   load_dataset("parquet", data_files=str(Path(snap.path) / "parquet" / "train.parquet"))["train"]):
            trainer, _, notes = build_trainer(base=str(tiny_model_dir), cfg=cfg,
                                              train=ds.select_columns(cols), val=None,
                                              output_dir=str(tmp_path / "out"))
            batch = next(iter(trainer.get_train_dataloader()))
            key = "input_ids" if snap.kind == "sft" else next(k for k in batch if "input_ids" in k)
            assert batch[key].shape[0] == cfg["per_device_train_batch_size"] and batch[key].shape[1] <= cfg["max_length"]
            if snap.kind == "sft":  # the tiny template has {% generation %}: only assistant tokens are labelled
                assert notes == [] and (batch["labels"] == -100).any() and (batch["labels"] != -100).any()


def test_sft_run_through_the_worker_records_loss_and_writes_an_adapter(sqlite_engine, tiny_model_dir, tmp_path):
    snap = _export(sqlite_engine, tmp_path, "sft")
    run, job = runs.create_run(sqlite_engine, base_model=str(tiny_model_dir), method="sft", export_name=snap.name,
                               preset="test", overrides={**SMALL, "merge": True}, output_root=tmp_path / "runs")
    assert _run_worker(sqlite_engine)
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "succeeded", (r.error, r.log_tail)
    assert get_job(sqlite_engine, job.id).status == "succeeded"
    train = [m for m in runs.run_metrics(sqlite_engine, run.id) if m["kind"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3]
    assert all(m["loss"] > 0 and m["learning_rate"] > 0 and m["grad_norm"] is not None for m in train)
    assert any(m["kind"] == "eval" for m in runs.run_metrics(sqlite_engine, run.id)) and "eval_loss" in r.metrics
    assert r.global_step == 3 and r.max_steps == 3
    adapter = Path(r.adapter_path)
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    card = (adapter / "README.md").read_text()
    assert snap.sha256 in card and str(tiny_model_dir) in card
    base, tuned = _logits(tiny_model_dir), _logits(tiny_model_dir, adapter)
    assert not base.allclose(tuned, atol=1e-6)  # the adapter changes the logits
    merged = _logits(r.merged_path)  # the fp32 merge gives the same function as base + adapter
    assert merged.allclose(tuned, atol=1e-4)


def test_dpo_run_through_the_worker(sqlite_engine, tiny_model_dir, tmp_path, monkeypatch):
    """Also: a warm engine the worker holds from the job before is closed first (its memory goes to training).
    The held engine is a stand-in object: a real one would be a vLLM process."""
    from curation.backends.engines import POOL

    closed = []
    monkeypatch.setattr(POOL, "_backend", type("Held", (), {"close": lambda self: closed.append(True)})())
    monkeypatch.setattr(POOL, "_key", "vllm warm from the job before")
    seed(sqlite_engine, n=12)
    snap = create_export(sqlite_engine, "prefs", "dpo", out_dir=tmp_path / "exports")
    run, job = runs.create_run(sqlite_engine, base_model=str(tiny_model_dir), method="dpo", export_name="prefs",
                               preset="test", overrides=SMALL, output_root=tmp_path / "runs")
    assert _run_worker(sqlite_engine)
    assert closed == [True] and POOL.held() is None
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "succeeded", (r.error, r.log_tail)
    train = [m for m in runs.run_metrics(sqlite_engine, run.id) if m["kind"] == "train"]
    assert len(train) == 3 and all(m["loss"] is not None for m in train)
    assert not _logits(tiny_model_dir).allclose(_logits(tiny_model_dir, r.adapter_path), atol=1e-6)
    assert snap.counts["pairs_by_source"]["status"] == 1


def test_run_needs_a_ready_export_of_its_kind(sqlite_engine, tmp_path):
    _export(sqlite_engine, tmp_path, "sft")
    with pytest.raises(runs.RunError, match="not ready"):
        runs.create_run(sqlite_engine, base_model="m", method="sft", export_name="missing")
    with pytest.raises(runs.RunError, match="needs a dpo"):
        runs.create_run(sqlite_engine, base_model="m", method="dpo", export_name="sft-set")
    with pytest.raises(ValueError, match="preset 'huge'"):
        runs.create_run(sqlite_engine, base_model="m", method="sft", export_name="sft-set", preset="huge")
    with pytest.raises(ValueError, match="'max_steps'"):
        TrainConfig().with_overrides({"max_steps": "many"})


def _start_long_run(engine, tiny_model_dir, tmp_path):
    snap = _export(engine, tmp_path, "sft")
    run, job = runs.create_run(engine, base_model=str(tiny_model_dir), method="sft", export_name=snap.name,
                               preset="test", overrides={"max_steps": 5000, "save_steps": 2, "logging_steps": 1,
                                                         "save_total_limit": 2},
                               output_root=tmp_path / "runs")
    t = threading.Thread(target=_run_worker, args=(engine,), daemon=True)
    t.start()
    return run, job, t


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_stops_the_process_and_resume_continues_from_the_checkpoint(sqlite_engine, tiny_model_dir, tmp_path):
    run, job, worker = _start_long_run(sqlite_engine, tiny_model_dir, tmp_path)
    _wait(lambda: runs.run_checkpoints(sqlite_engine, run.id), what="a checkpoint")
    pid = runs.get_run(sqlite_engine, run.id).pid
    runs.cancel_run(sqlite_engine, run.id)
    worker.join(timeout=60)
    assert not worker.is_alive()
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "cancelled" and get_job(sqlite_engine, job.id).status == "cancelled"
    assert not _alive(pid) and r.global_step < 5000
    ckpt = max(c.step for c in runs.run_checkpoints(sqlite_engine, run.id))

    runs.resume_run(sqlite_engine, run.id, overrides={"max_steps": ckpt + 2})
    assert _run_worker(sqlite_engine)
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "succeeded", (r.error, r.log_tail)
    assert "resuming from" in r.log_tail and f"checkpoint-{ckpt}" in r.log_tail
    steps = [m["step"] for m in runs.run_metrics(sqlite_engine, run.id) if m["kind"] == "train"]
    assert steps == list(range(1, ckpt + 3))  # no step twice, none missing
    assert r.global_step == ckpt + 2 and Path(r.adapter_path).is_dir()


def test_a_killed_training_process_leaves_the_run_failed_with_its_log(sqlite_engine, tiny_model_dir, tmp_path):
    run, job, worker = _start_long_run(sqlite_engine, tiny_model_dir, tmp_path)
    _wait(lambda: runs.run_metrics(sqlite_engine, run.id), what="a logged step")
    os.kill(runs.get_run(sqlite_engine, run.id).pid, signal.SIGKILL)
    worker.join(timeout=60)
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "failed" and "signal 9" in r.error and "SIGKILL" in r.error
    assert "sft on export 'sft-set'" in r.log_tail
    j = get_job(sqlite_engine, job.id)
    assert j.status == "failed" and "signal 9" in j.error
    assert [(x.id, x.status) for x in runs.list_runs(sqlite_engine)] == [(run.id, "failed")]


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's new parent may be slow to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


_WORKER = "import os; from app.worker import Worker; from db.engine import make_engine; " \
          "Worker(make_engine(os.environ['DATABASE_URL']), heartbeat_s=0.5).run(once=True)"


def test_a_killed_worker_publishes_no_adapter_and_the_next_worker_fails_the_run(sqlite_url, sqlite_engine,
                                                                                 tiny_model_dir, tmp_path):
    """kill -9 of a real worker process while its trainer child trains: the child stops at a checkpoint and
    publishes no adapter; eval refuses the run; the next worker reaps the job and fails the run; resume finishes."""
    from typer.testing import CliRunner

    from app.cli import app
    from app.worker import Worker

    snap = _export(sqlite_engine, tmp_path, "sft")
    run, job = runs.create_run(sqlite_engine, base_model=str(tiny_model_dir), method="sft", export_name=snap.name,
                               preset="test", overrides={"max_steps": 5000, "save_steps": 2, "logging_steps": 1,
                                                         "save_total_limit": 2}, output_root=tmp_path / "runs")
    worker = subprocess.Popen([sys.executable, "-c", _WORKER], cwd=ROOT, env={**os.environ, "DATABASE_URL": sqlite_url})
    try:
        _wait(lambda: runs.run_checkpoints(sqlite_engine, run.id), what="a checkpoint")
        trainer = runs.get_run(sqlite_engine, run.id).pid
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
        _wait(lambda: not _running(trainer), timeout=120, what="the orphaned trainer to stop")
    finally:
        worker.kill()
    r = runs.get_run(sqlite_engine, run.id)
    log = (Path(r.output_dir) / "train.log").read_text()
    assert "the worker process is gone" in log and "no adapter" in log
    assert r.adapter_path is None and not (Path(r.output_dir) / "adapter").exists() and r.global_step < 5000
    assert max(c.step for c in runs.run_checkpoints(sqlite_engine, run.id)) == r.global_step  # saved on stop
    assert r.status == "running"  # until a worker reaps its job

    res = CliRunner().invoke(app, ["eval", "--run", str(run.id), "--suite", "harmful"],
                             env={"DATABASE_URL": sqlite_url})
    assert res.exit_code == 2 and f"training run {run.id} is running" in res.output, res.output

    time.sleep(1.5)
    Worker(sqlite_engine, stale_after_s=1.0).run(once=True)  # reaps before it claims
    r = runs.get_run(sqlite_engine, run.id)
    assert get_job(sqlite_engine, job.id).status == "failed"
    assert r.status == "failed" and r.pid is None and "no heartbeat" in r.error
    assert runs.can_resume(r)

    stopped = r.global_step
    runs.resume_run(sqlite_engine, run.id, overrides={"max_steps": stopped + 1})
    assert _run_worker(sqlite_engine)
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "succeeded" and f"checkpoint-{stopped}" in r.log_tail, (r.error, r.log_tail)
    assert Path(r.adapter_path).is_dir() and not (Path(r.output_dir) / "adapter.partial").exists()


def test_training_services_are_checked_on_the_acting_user(sqlite_engine, tmp_path):
    from core.errors import PermissionDenied
    from tests.test_training_pages import _user

    _export(sqlite_engine, tmp_path, "sft")
    annotator, reviewer = _user(sqlite_engine, "a2", "annotator"), _user(sqlite_engine, "r2", "reviewer")
    with pytest.raises(PermissionDenied):
        runs.create_run(sqlite_engine, base_model="m", method="sft", export_name="sft-set", created_by=annotator)
    run, job = runs.create_run(sqlite_engine, base_model="m", method="sft", export_name="sft-set",
                               created_by=reviewer)
    with pytest.raises(PermissionDenied):
        runs.cancel_run(sqlite_engine, run.id, user_id=annotator)
    runs.cancel_run(sqlite_engine, run.id, user_id=reviewer)
    assert get_job(sqlite_engine, job.id).status == "cancelled"


def test_cli_train_wait_runs_the_job_and_shows_the_loss(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from app.cli import app
    from tests.test_export import _cli_engine

    eng = _cli_engine()
    seed(eng, n=6)
    runner = CliRunner()
    assert runner.invoke(app, ["export", "cli-set", "--format", "hf"]).exit_code == 0
    other = enqueue(eng, "import_builtin", {"name": "xstest"})  # someone else's job, queued first
    res = runner.invoke(app, ["train", "--export", "cli-set", "--base-model", str(tiny_model_dir), "--method", "sft",
                              "--preset", "test", "--set", "max_steps=2", "--set", "save_steps=50", "--wait"])
    assert res.exit_code == 0, res.output
    assert "succeeded; adapter" in res.output
    # --wait ran exactly the job it queued, in this process, and left the other job to a worker
    assert get_job(eng, other.id).status == "queued"
    assert get_job(eng, runs.list_runs(eng)[0].job_id).worker_id.startswith("cli:")
    assert "step 2: loss " in res.output
    run = runs.list_runs(eng)[0]
    assert run.status == "succeeded" and run.global_step == 2


def test_any_trl_field_passes_through_from_preset_override_and_cli(sqlite_engine, tiny_model_dir, tmp_path):
    """The config mirrors no TRL field: a field we never named (neftune_noise_alpha, eval_accumulation_steps)
    reaches TRL's SFTConfig from `--set`, typed by TRL's own default; unknown or run-owned fields are refused."""
    from training.config import ConfigError, TrainConfig
    from training.runner import build_trainer

    _, cfg = build_config("sft", "tiny", "test", {"neftune_noise_alpha": "5", "eval_accumulation_steps": "3",
                                                  "lora_r": "2"})
    assert cfg.lora_r == 2 and cfg.trl["neftune_noise_alpha"] == 5.0 and cfg.trl["eval_accumulation_steps"] == 3
    snap = _export(sqlite_engine, tmp_path, "sft")
    from datasets import load_from_disk

    train = load_from_disk(str(Path(snap.path) / "hf"))["train"].select_columns(["messages"])
    trainer, _, _ = build_trainer(base=str(tiny_model_dir), cfg=cfg, train=train, val=None,
                                  output_dir=str(tmp_path / "out"))
    assert trainer.args.neftune_noise_alpha == 5.0 and trainer.args.eval_accumulation_steps == 3
    assert trainer.args.learning_rate == 1e-3  # the preset's value
    with pytest.raises(ConfigError, match="'colour'"):
        TrainConfig().with_overrides({"colour": "red"})
    with pytest.raises(ConfigError, match="output_dir"):
        build_config("sft", "tiny", "test", {"output_dir": "/elsewhere"})
    assert TrainConfig.from_dict({"method": "sft", "lora_r": 8, "learning_rate": 1e-4}).trl == {"learning_rate": 1e-4}


def test_small_model_preset_trains_without_recomputation_in_length_groups(sqlite_engine, tiny_model_dir, tmp_path):
    """The xs preset switches TRL's default activation checkpointing off (False must reach TRL, not be dropped),
    groups batches by length, and bf16 'auto' follows the CPU's native bf16 support."""
    from datasets import load_from_disk

    from training.runner import _cpu_bf16, build_trainer

    snap = _export(sqlite_engine, tmp_path, "sft")
    train = load_from_disk(str(Path(snap.path) / "hf"))["train"].select_columns(["messages"])
    for overrides, checkpointing in (({}, False), ({"gradient_checkpointing": True}, True)):
        preset, cfg = build_config("sft", "SmolLM2-135M", None, {**overrides, "max_steps": 1})
        trainer, _, _ = build_trainer(base=str(tiny_model_dir), cfg=cfg, train=train, val=None,
                                      output_dir=str(tmp_path / "out"))
        args = trainer.args
        assert preset == "xs" and args.train_sampling_strategy == "group_by_length"
        assert getattr(args, "activation_checkpointing", args.gradient_checkpointing) is checkpointing
        assert args.bf16 is _cpu_bf16()
    # DPO on the same preset: its rows have no single input_ids to group by length, so it samples plainly
    from datasets import load_from_disk as load

    dpo = create_export(sqlite_engine, "dpo-xs", "dpo", out_dir=tmp_path / "exports")
    pairs = load(str(Path(dpo.path) / "hf"))["train"].select_columns(["prompt", "chosen", "rejected"])
    _, cfg = build_config("dpo", "SmolLM2-135M", None, {"max_steps": 1})
    trainer, _, _ = build_trainer(base=str(tiny_model_dir), cfg=cfg, train=pairs, val=None,
                                  output_dir=str(tmp_path / "dpo-out"))
    assert next(iter(trainer.get_train_dataloader()))  # TRL's LengthGroupedSampler refused these rows


def test_cpu_trainer_uses_the_models_own_loss_with_the_same_value_and_gradients(sqlite_engine, tiny_model_dir,
                                                                                 tmp_path):
    """Off CUDA the SFT trainer takes the model's own loss instead of TRL's fused LM head (slower without Triton):
    on one batch, with the accumulation normaliser the Trainer passes, both give the same loss and LoRA gradients."""
    import torch
    from datasets import load_from_disk
    from trl import SFTTrainer

    from training.runner import build_trainer

    snap = _export(sqlite_engine, tmp_path, "sft")
    train = load_from_disk(str(Path(snap.path) / "hf"))["train"].select_columns(["messages"])
    _, cfg = build_config("sft", "tiny", "test")
    trainer, _, _ = build_trainer(base=str(tiny_model_dir), cfg=cfg, train=train, val=None,
                                  output_dir=str(tmp_path / "out"))
    assert type(trainer).compute_loss is not SFTTrainer.compute_loss
    batch = next(iter(trainer.get_train_dataloader()))
    n_items = int((batch["labels"][:, 1:] != -100).sum()) * 3  # as if this were one of three accumulated batches
    results = []
    for compute in (type(trainer).compute_loss, SFTTrainer.compute_loss):
        trainer.model.zero_grad()
        loss = compute(trainer, trainer.model, dict(batch), num_items_in_batch=n_items)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]
        results.append((loss.detach(), grads))
    (ours, g_ours), (trl, g_trl) = results
    assert torch.allclose(ours, trl, atol=1e-5), (ours, trl)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_ours, g_trl))
