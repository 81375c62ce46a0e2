"""Benchmark: training through our job runner vs a plain TRL script, and export throughput.

    .venv/bin/python bench/training.py [--steps 30] [--export-rows 100000] [--home /tmp/rational-bench]

1. The same SFT config (SmolLM2-135M-Instruct, CPU, LoRA, the loop's training settings, the same export, `--steps`
   steps) runs three ways: a bare PyTorch step (the same model, LoRA, batches and validation pass in a plain loop
   with the model's own loss: the limit here), a plain TRL script, and `rational`'s worker job (subprocess, DB
   metrics callback, checkpoints). Prints steps/s and tokens/s of each training loop and the ratios: time per
   token ours / bare (goal <= 1.3) and throughput ours / plain TRL (goal >= 1.0).
2. Export throughput: 100k approved traces in a fresh SQLite database, one SFT export in all three formats (goal
   >= 20k rows/s).
Numbers depend on the machine and its load; run on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLAIN_TRL = r"""
import json, sys, time
import torch
from datasets import load_from_disk
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

base, data, out, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
bare = sys.argv[5:] == ["bare"]
tok = AutoTokenizer.from_pretrained(base)
from transformers import AutoConfig
config = AutoConfig.from_pretrained(base)
if isinstance(getattr(config, "quantization_config", None), dict):
    del config.quantization_config  # the GGUF-converted folder's weights are already dequantized
model = AutoModelForCausalLM.from_pretrained(base, config=config, dtype=torch.float32)
dd = load_from_disk(data)
train = dd["train"].select_columns(["messages"])
# The same work as our runner: it evaluates the validation split every eval_steps (default save_steps).
val = dd["validation"].select_columns(["messages"]) if "validation" in dd and dd["validation"].num_rows else None
# The preset's speed settings, as our runner passes them (TRL's default recomputes the forward pass)
from transformers import TrainingArguments
ckpt = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ \
    else "gradient_checkpointing"
same = {ckpt: bool(cfg.get("gradient_checkpointing", True))}
if "train_sampling_strategy" in cfg:
    same["train_sampling_strategy"] = cfg["train_sampling_strategy"]
args = SFTConfig(output_dir=out, per_device_train_batch_size=cfg["per_device_train_batch_size"],
                 gradient_accumulation_steps=cfg.get("gradient_accumulation_steps", 1), learning_rate=cfg["learning_rate"],
                 max_steps=cfg["max_steps"], warmup_steps=cfg["warmup_steps"], lr_scheduler_type=cfg["lr_scheduler_type"],
                 logging_steps=cfg["logging_steps"], save_strategy="steps", save_steps=cfg["save_steps"],
                 seed=cfg["seed"], report_to=[], use_cpu=True, bf16=False, max_length=cfg["max_length"],
                 include_num_input_tokens_seen="non_padding", disable_tqdm=True, assistant_only_loss=False,
                 packing=False, eval_strategy="steps" if val is not None else "no",
                 eval_steps=cfg.get("eval_steps") or cfg["save_steps"], **same)
peft = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                  target_modules=cfg["target_modules"], task_type="CAUSAL_LM", bias="none")
trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok,
                     peft_config=peft)
if not bare:
    m = trainer.train().metrics
    m["num_input_tokens_seen"] = trainer.state.num_input_tokens_seen
    print("RESULT " + json.dumps(m), flush=True)
    sys.exit(0)
# The bare step: the same model, LoRA, batches (TRL's own collator and sampler) and validation pass, in a plain
# PyTorch loop with the model's own loss; the limit a trainer on this machine can reach.
model = trainer.model
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=cfg["learning_rate"])
batches, tokens, t0 = iter(trainer.get_train_dataloader()), 0, time.perf_counter()
for _ in range(cfg["max_steps"]):
    try:
        b = next(batches)
    except StopIteration:
        batches = iter(trainer.get_train_dataloader())
        b = next(batches)
    model(**b, use_cache=False).loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
    tokens += int(b["attention_mask"].sum())
if val is not None:
    model.eval()
    with torch.no_grad():
        for b in trainer.get_eval_dataloader():
            model(**b, use_cache=False)
print("RESULT " + json.dumps({"train_runtime": time.perf_counter() - t0, "num_input_tokens_seen": tokens}), flush=True)
"""


def _seed_training_data(engine, n_prompts: int = 200) -> None:
    """Approved traces over built-in AdvBench (refuse) and XSTest-safe-like (comply) prompts, as reviewed data."""
    from sqlalchemy import insert, select
    from sqlmodel import Session

    from curation.prompts.builtin import import_builtin
    from db.models import Prompt, Trace

    import_builtin(engine, "advbench")
    with Session(engine) as s:
        prompts = s.execute(select(Prompt.id, Prompt.text).order_by(Prompt.id).limit(n_prompts)).all()
    rows = [dict(prompt_id=pid, sample_index=0, status="approved", parse_ok=True, raw="", strategy="single",
                 model="bench", backend="bench", sampling={}, version=1, meta={},
                 reasoning=(f"The request asks: {text[:120]}. This could cause real harm to people; the intent is "
                            "unclear and the potential for misuse is high, so I should decline and offer a safe "
                            "alternative."),
                 response="I can't help with that. If you are interested in the topic, I can explain the safety "
                          "and legal aspects instead.")
            for pid, text in prompts]
    with engine.begin() as c:
        c.execute(insert(Trace), rows)


def bench_training(home: Path, steps: int, reps: int = 2) -> dict:
    from app.worker import Worker
    from curation.backends.catalog import resolve_model
    from curation.export.snapshot import create_export
    from db.engine import make_engine
    from db.migrate import upgrade
    from training.runs import create_run, get_run
    from workflows.loop_config import LoopConfig

    db = home / f"bench-{os.getpid()}.db"
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng)
    _seed_training_data(eng)
    snap = create_export(eng, "bench-sft", "sft", out_dir=home / f"exports-{os.getpid()}", formats=["hf"])
    base = resolve_model("smollm2-135m-instruct")
    # The loop's training settings (its preset and overrides), for a fixed number of steps.
    overrides = {**LoopConfig().train_overrides, "max_steps": steps, "logging_steps": 5, "save_steps": steps,
                 "assistant_only_loss": "false"}

    # Plain TRL, the bare step, then ours, and again: alternating thirds drift alike with other load on the machine.
    results: dict[str, list[dict]] = {"plain": [], "bare": [], "ours": []}
    for rep in range(reps):
        run, _ = create_run(eng, base_model="smollm2-135m-instruct", method="sft", export_name="bench-sft",
                            preset="xs", overrides=overrides, output_root=home / f"runs-{os.getpid()}-{rep}")
        cfg = {**run.config["trl"], **{k: v for k, v in run.config.items() if k != "trl"}}  # one flat dict
        for arm in ("plain", "bare"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", PLAIN_TRL, base, str(Path(snap.path) / "hf"),
                                  str(home / f"{arm}-{os.getpid()}-{rep}"), json.dumps(cfg), arm],
                                 capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise RuntimeError(f"{arm} run failed:\n" + out.stderr[-3000:])
            m = json.loads(line[0][7:])
            results[arm].append({"wall_s": wall, "train_runtime": m["train_runtime"],
                                 "tokens": m["num_input_tokens_seen"]})

        t0 = time.perf_counter()
        Worker(eng, heartbeat_s=2.0).run_one()
        wall = time.perf_counter() - t0
        r = get_run(eng, run.id)
        if r.status != "succeeded":
            raise RuntimeError(f"our run {run.id} {r.status}: {r.error}\n{r.log_tail[-3000:]}")
        results["ours"].append({"wall_s": wall, "train_runtime": r.metrics["train_runtime"],
                                "tokens": r.metrics.get("num_input_tokens_seen") or _tokens_from_log(r.log_tail)})
    eng.dispose()
    return {"steps": steps, "results": results}


def _tokens_from_log(tail: str) -> int:
    seen = [int(x.split("'num_input_tokens_seen': ")[1].split(",")[0].split("}")[0])
            for x in tail.splitlines() if "'num_input_tokens_seen': " in x]
    return max(seen) if seen else 0


def bench_export(home: Path, n_traces: int) -> dict:
    from sqlalchemy import insert, select
    from sqlmodel import Session

    from core.identity import prompt_sha256
    from curation.export.snapshot import create_export
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.models import Prompt, PromptSet, Trace

    db = home / f"export-{os.getpid()}.db"
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng)
    per_prompt = 4
    with Session(eng) as s:
        tr = PromptSet(project_id=1, name="bench-train", license="MIT")
        ev = PromptSet(project_id=1, name="bench-eval", license="MIT")
        s.add_all([tr, ev])
        s.commit()
        tr_id, ev_id = tr.id, ev.id
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
             "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()

    def text(i: int) -> str:  # distinct, sentence-like prompts
        w = [words[(i // 26 ** k) % 26] for k in range(4)]
        return f"Request {i}: explain {w[0]} {w[1]} and {w[2]} {w[3]} in the context of item {i * 7919 % 100003}."

    n_prompts = n_traces // per_prompt
    prompts = [dict(project_id=1, set_id=tr_id, text=text(i), sha256=prompt_sha256(text(i)),
                    expected_behavior="refuse" if i % 2 else "comply", split="train", meta={},
                    mutation=None if i % 3 else "slang") for i in range(n_prompts)]
    evals = [dict(project_id=1, set_id=ev_id, text=f"Evaluation question {i}: how does {words[i % 26]} relate to "
                  f"{words[(i * 7) % 26]} under condition {i}?", sha256=prompt_sha256(f"eval {i}"), meta={},
                  expected_behavior="refuse", split="eval") for i in range(500)]
    with eng.begin() as c:
        c.execute(insert(Prompt), prompts)
        c.execute(insert(Prompt), evals)
    with Session(eng) as s:
        ids = s.execute(select(Prompt.id).where(Prompt.set_id == tr_id).order_by(Prompt.id)).scalars().all()
    traces = [dict(prompt_id=pid, sample_index=k, status="approved", parse_ok=True, raw="", strategy="single",
                   model="bench", backend="bench", sampling={}, version=1, meta={}, template_version="v1",
                   reasoning=f"Reasoning about prompt {pid}, sample {k}: assess the risk, the intent and the harm.",
                   response=f"The answer for prompt {pid}, sample {k}, with a safe alternative where needed.")
              for pid in ids for k in range(per_prompt)]
    with eng.begin() as c:
        for i in range(0, len(traces), 20000):
            c.execute(insert(Trace), traces[i:i + 20000])
    phases: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(done, total, phase):
        now = time.perf_counter()
        phases[phase] = now
        last[0] = now

    import datasets  # noqa: F401,E401  (a running worker has these loaded already)

    t0 = time.perf_counter()
    res = create_export(eng, "bench-100k", "sft", out_dir=home / f"exports-100k-{os.getpid()}", progress=progress)
    dt = time.perf_counter() - t0
    marks = sorted(phases.items(), key=lambda kv: kv[1])
    split = {marks[i][0]: round(marks[i + 1][1] - marks[i][1], 2) for i in range(len(marks) - 1)}
    eng.dispose()
    return {"rows": res.row_count, "seconds": dt, "rows_per_s": res.row_count / dt, "phase_seconds": split}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--export-rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=2, help="alternating repetitions of each arm")
    ap.add_argument("--home", default=str(Path(tempfile.gettempdir()) / "rational-bench"))
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-export", action="store_true")
    a = ap.parse_args()
    home = Path(a.home)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["RATIONAL_HOME"] = str(home)  # the converted SmolLM2 folder is cached here between runs
    os.environ.pop("DATABASE_URL", None)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not a.skip_export:
        e = bench_export(home, a.export_rows)
        print(f"export: {e['rows']:,} rows in {e['seconds']:.2f} s = {e['rows_per_s']:,.0f} rows/s "
              f"(goal >= 20,000); phases {e['phase_seconds']}")
    if not a.skip_training:
        t = bench_training(home, a.steps, a.reps)
        agg = {}
        for arm, reps in t["results"].items():
            rt = sum(r["train_runtime"] for r in reps)
            agg[arm] = {"steps_per_s": t["steps"] * len(reps) / rt, "tokens_per_s": sum(r["tokens"] for r in reps) / rt,
                        "wall_s": sum(r["wall_s"] for r in reps) / len(reps)}
            for i, r in enumerate(reps):
                print(f"{arm:5s} rep {i}: train {r['train_runtime']:.1f} s for {t['steps']} steps "
                      f"({t['steps'] / r['train_runtime']:.3f} steps/s, {r['tokens'] / r['train_runtime']:.0f} "
                      f"tokens/s), wall {r['wall_s']:.1f} s")
        for arm in ("bare", "plain", "ours"):
            g = agg[arm]
            print(f"{arm:5s}: {g['steps_per_s']:.3f} steps/s, {g['tokens_per_s']:.0f} tokens/s, "
                  f"mean wall {g['wall_s']:.1f} s")
        print(f"time per token, ours / bare step: {agg['bare']['tokens_per_s'] / agg['ours']['tokens_per_s']:.3f} "
              f"(goal <= 1.3); plain TRL / bare: {agg['bare']['tokens_per_s'] / agg['plain']['tokens_per_s']:.3f}")
        print(f"throughput ours / plain TRL: tokens/s {agg['ours']['tokens_per_s'] / agg['plain']['tokens_per_s']:.3f}"
              f" (goal >= 1.0), steps/s {agg['ours']['steps_per_s'] / agg['plain']['steps_per_s']:.3f}; "
              f"wall plain/ours {agg['plain']['wall_s'] / agg['ours']['wall_s']:.3f}")


if __name__ == "__main__":
    main()
