"""Generation throughput on CPU with the embedded SmolLM2-135M-Instruct, same prompts and settings throughout:

  1. our vllm backend (engine in a runner subprocess)   vs  raw `vllm.LLM.chat`     (goal: ratio >= 0.9)
  2. our transformers backend                            vs  raw `model.generate`  (goal: ratio >= 0.9)
  3. vllm                                                vs  transformers (which engine `backend auto` should pick)

The header names the CPU and its SIMD flags: vLLM-CPU is fast only with AVX-512/AMX. To see the AVX2 path on a
machine with AVX-512, set ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 (torch's kernels and oneDNN's; both
printed in the header).

Greedy decoding, one batch of N chat prompts (HarmBench-val behaviours under the rejection self-check prompt),
R timed repeats after a warm-up, raw and ours alternating (best run reported); tokens/s = generated tokens / wall seconds of the generate call.
Run: .venv/bin/python bench/generation.py [--prompts 16] [--max-tokens 64] [--threads 1] [--repeats 2]

With --yield, the yield per strategy through the product's own run code (vLLM, one warm engine for all): usable
samples (parse, reply matches the expected behaviour, every quality gate passed) on 60 harmful + 60 benign dev
prompts (HarmBench val, CoCoNot contrast; the ones the scaffold's templates were written against), K=2, T=0.7; then
the default strategy on held-out prompts never used for that (AdvBench rows 300-359, Alpaca instructions 5000-5059);
then the start-to-first-trace time of a job on a cold and on a warm engine. --write-measured stores the dev table
as the shipped measurement the default strategy is chosen from.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def conversations(n: int) -> list[list[dict]]:
    from curation.generation.selfcheck import REJECTION_SELF_CHECK
    from curation.generation.traceformat import DEFAULT_FORMAT

    path = ROOT / "curation" / "prompts" / "builtin" / "data" / "harmbench" / "harmbench_behaviors_text_val.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r["Behavior"] for r in csv.DictReader(fh) if r["FunctionalCategory"] == "standard"][:n]
    system = DEFAULT_FORMAT.fill(REJECTION_SELF_CHECK)
    return [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in rows]


class RawVLLM:
    """The raw baseline engine, alive in its own process (vLLM's venv) for the whole bench."""

    def __init__(self, model: str, convs, max_tokens: int, args):
        from curation.backends.vllm_env import find_vllm_python

        env = {**os.environ, **vllm_env()}
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen([find_vllm_python(), str(Path(__file__).with_name("_raw_vllm.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        cfg = {"model": model, "conversations": convs, "max_tokens": max_tokens, **vllm_settings(args)}
        self.proc.stdin.write(json.dumps(cfg) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"raw vLLM failed to start ({self.proc.poll()})")

    def timed(self) -> tuple[float, int]:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        d = json.loads(self.proc.stdout.readline()[len("RESULT "):])
        return d["seconds"], d["tokens"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def timed_backend(be, reqs) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = be.generate(reqs)
    return time.perf_counter() - t0, sum(r.completion_tokens for r in res)


def vllm_settings(args) -> dict:
    return {"dtype": "float32", "max_model_len": 2048,
            "engine_args": {"enforce_eager": True} if args.eager else {}}


def vllm_env() -> dict:
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def bench_vllm(model: str, convs, args) -> dict[str, list]:
    """Raw and wrapped engines both loaded; timed runs alternate so both see the same machine load."""
    from curation.backends import ChatRequest, SamplingParams, make_backend

    s = vllm_settings(args)
    raw = RawVLLM(model, convs, args.max_tokens, args)
    ours = make_backend("vllm", model, env=vllm_env(), dtype=s["dtype"], max_model_len=s["max_model_len"],
                        engine_args=s["engine_args"], startup_timeout_s=900)
    reqs = [ChatRequest(c, SamplingParams(max_tokens=args.max_tokens)) for c in convs]
    ours.generate([ChatRequest(c, SamplingParams(max_tokens=4)) for c in convs[:2]])  # warm-up
    out: dict[str, list] = {"raw vllm.LLM.chat": [], "our vllm backend": []}
    try:
        for _ in range(args.repeats):
            out["raw vllm.LLM.chat"].append(raw.timed())
            out["our vllm backend"].append(timed_backend(ours, reqs))
    finally:
        raw.close()
        ours.close()
    return out


def bench_transformers(model: str, convs, args) -> dict[str, list]:
    """Raw `generate` and our backend on the same loaded weights, alternating."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.backends import ChatRequest, SamplingParams, make_backend

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    ours = make_backend("transformers", model, batch_size=len(convs), tokenizer=tok, hf_model=m)
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos = tok.eos_token_id

    def raw() -> tuple[float, int]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = m.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        dt = time.perf_counter() - t0
        # Count up to and including the first EOS, as the backend does.
        n = sum(next((i + 1 for i, t in enumerate(row) if t == eos), len(row))
                for row in gen[:, enc["input_ids"].shape[1]:].tolist())
        return dt, n

    reqs = [ChatRequest(c, SamplingParams(max_tokens=args.max_tokens)) for c in convs]
    ours.generate(reqs[:2])  # warm-up
    out: dict[str, list] = {"raw model.generate": [], "our transformers backend": []}
    for _ in range(args.repeats):
        out["raw model.generate"].append(raw())
        out["our transformers backend"].append(timed_backend(ours, reqs))
    return out


DEV = {"refuse": ("harmbench_val", 0), "comply": ("coconot_contrast", 0)}
HELD_OUT = {"refuse": ("advbench", 300), "comply": ("alpaca_harmless", 5000)}


def _prompt_ids(eng, sets: dict, n: int) -> list[int]:
    from db.crud import prompt_texts
    from db.filters import PromptFilter

    ids = []
    for behavior, (name, offset) in sets.items():
        rows = prompt_texts(eng, PromptFilter(set_names=[name], behaviors=[behavior], mutated=False),
                            limit=offset + n)
        ids += [pid for pid, _ in rows[offset:offset + n]]
    return ids


def _run(eng, be, strategy: str, ids: list[int], args) -> dict:
    from curation.generation.config import GenerationConfig, Selection
    from curation.generation.runs import create_run, run_generation

    cfg = GenerationConfig(model="smollm2-135m-instruct", backend=be.name, strategy=strategy, samples=2,
                           temperature=0.7, max_tokens=args.yield_max_tokens,
                           stop=["\n\n"] if strategy in ("single", "two_pass") else [])
    run = create_run(eng, cfg, Selection(prompt_ids=ids), name=f"bench {strategy}")
    t0 = time.perf_counter()
    s = run_generation(eng, run.id, backend=be)
    return {"yield": s["yield"], "seconds": time.perf_counter() - t0, "tokens_per_s": s["tokens_per_s"],
            "rejected": s["rejected"]}


def bench_yield(args) -> None:
    import tempfile

    os.environ["RATIONAL_HOME"] = tempfile.mkdtemp(prefix="rational-yield-")
    from curation.backends import make_backend
    from curation.backends.catalog import resolve_model
    from curation.generation.strategies import STRATEGIES
    from curation.prompts.builtin import import_builtin
    from db.engine import make_engine
    from db.migrate import upgrade

    eng = make_engine(f"sqlite:///{os.environ['RATIONAL_HOME']}/bench.db")
    upgrade(eng)
    for name in ("harmbench_val", "coconot_contrast", "advbench", "alpaca_harmless"):
        import_builtin(eng, name)
    s = vllm_settings(args)
    be = make_backend("vllm", resolve_model("smollm2-135m-instruct"), env=vllm_env(), dtype=s["dtype"],
                      max_model_len=s["max_model_len"], engine_args=s["engine_args"], startup_timeout_s=900)
    dev = _prompt_ids(eng, DEV, args.yield_prompts)
    table: dict[str, dict] = {}
    print(f"\nyield on {len(dev)} dev prompts x K=2, T=0.7, max_tokens={args.yield_max_tokens} (usable / samples)")
    print(f"{'strategy':10s} {'harmful usable':>15s} {'benign usable':>15s} {'seconds':>8s} {'tok/s':>6s}  top rejection")
    for name in [n for n in STRATEGIES if n in args.strategies.split(",")]:
        r = _run(eng, be, name, dev, args)
        y = r["yield"]
        table[name] = {b: [y.get(b, {}).get("usable", 0), y.get(b, {}).get("samples", 0)] for b in ("refuse",
                                                                                                       "comply")}
        top = next(iter(r["rejected"].items()), ("-", 0))
        print(f"{name:10s} {'%d / %d' % tuple(table[name]['refuse']):>15s} {'%d / %d' % tuple(table[name]['comply']):>15s}"
              f" {r['seconds']:8.0f} {r['tokens_per_s'] or 0:6.0f}  {top[1]}x {top[0]}", flush=True)
    best = max(table, key=lambda n: sum(u / max(1, k) for u, k in table[n].values()))
    held = _run(eng, be, best, _prompt_ids(eng, HELD_OUT, 60), args)
    hy = held["yield"]
    print(f"\nheld-out ({best}, AdvBench 300-359 + Alpaca 5000-5059, K=2): harmful "
          f"{hy['refuse']['usable']}/{hy['refuse']['samples']} usable "
          f"({100 * hy['refuse']['usable'] / hy['refuse']['samples']:.0f}%, goal >= 90%), benign "
          f"{hy['comply']['usable']}/{hy['comply']['samples']} ({100 * hy['comply']['usable'] / hy['comply']['samples']:.0f}%,"
          f" goal >= 80%); rejections {held['rejected']}")
    _echo_check(eng)
    be.close()
    if args.write_measured:
        from curation.generation.yields import MEASURED

        MEASURED.write_text(json.dumps({"smollm2-135m-instruct": {
            "aliases": ["default", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"],
            "source": f"shipped benchmark: bench/generation.py --yield, {time.strftime('%Y-%m-%d')}, 60 harmful + 60 "
                      "benign dev prompts, K=2, T=0.7, vLLM-CPU",
            "strategies": table}}, indent=1) + "\n")
        print(f"wrote {MEASURED}")
    bench_warm(eng, dev[:8], args)


def bench_yield_engines(args) -> None:
    """The default strategy's usable yield on the same dev prompts through each engine (the engine must not
    change the traces' quality, only their speed)."""
    import tempfile

    os.environ["RATIONAL_HOME"] = tempfile.mkdtemp(prefix="rational-yield-")
    from curation.backends import make_backend
    from curation.backends.catalog import resolve_model
    from curation.backends.choice import isa_line
    from curation.prompts.builtin import import_builtin
    from db.engine import make_engine
    from db.migrate import upgrade

    eng = make_engine(f"sqlite:///{os.environ['RATIONAL_HOME']}/bench.db")
    upgrade(eng)
    for name in ("harmbench_val", "coconot_contrast"):
        import_builtin(eng, name)
    dev = _prompt_ids(eng, DEV, args.yield_prompts)
    model = resolve_model("smollm2-135m-instruct")
    print(f"CPU: {isa_line()}\nscaffold on {len(dev)} dev prompts x K=2, T=0.7, max_tokens={args.yield_max_tokens}")
    print(f"{'engine':13s} {'harmful usable':>15s} {'benign usable':>15s} {'seconds':>8s} {'tok/s':>6s}")
    for name in ("transformers", "vllm"):
        s = vllm_settings(args)
        be = make_backend(name, model, **({"threads": args.threads} if name == "transformers" else
                                           {"env": vllm_env(), "dtype": s["dtype"], "startup_timeout_s": 900,
                                            "max_model_len": s["max_model_len"], "engine_args": s["engine_args"]}))
        try:
            r = _run(eng, be, "scaffold", dev, args)
        finally:
            be.close()
        y = r["yield"]
        cells = ["%d / %d" % (y.get(b, {}).get("usable", 0), y.get(b, {}).get("samples", 0))
                 for b in ("refuse", "comply")]
        print(f"{name:13s} {cells[0]:>15s} {cells[1]:>15s} {r['seconds']:8.0f} {r['tokens_per_s'] or 0:6.0f}",
              flush=True)


def _echo_check(eng) -> None:
    from sqlalchemy import case, func, select
    from sqlmodel import Session

    from db.models import Trace

    same = case((func.trim(Trace.reasoning) == func.trim(Trace.response), 1), else_=0)
    with Session(eng) as s:
        rows = s.execute(select(Trace.strategy, func.sum(same), func.count(Trace.id)).where(Trace.reasoning != "")
                         .group_by(Trace.strategy)).all()
    print("traces whose reasoning equals the response: " + ", ".join(f"{st} {n} of {k}" for st, n, k in rows))


def bench_warm(eng, ids: list[int], args) -> None:
    """Two generation jobs through the worker, one after the other on the same model: the second finds the
    engine warm. Start-to-first-trace = first stored trace's time minus the job's start."""
    from sqlalchemy import func, select
    from sqlmodel import Session

    from app.worker import Worker
    from curation.backends.engines import POOL
    from curation.generation.config import GenerationConfig, Selection
    from curation.generation.jobs import enqueue_generation
    from curation.generation.runs import create_run
    from db.jobs import get_job
    from db.models import Trace

    s = vllm_settings(args)
    opts = {"env": vllm_env(), "dtype": s["dtype"], "max_model_len": s["max_model_len"],
            "engine_args": s["engine_args"]}
    worker = Worker(eng)
    out = []
    for label in ("cold engine", "warm engine"):
        run = create_run(eng, GenerationConfig(model="smollm2-135m-instruct", backend="vllm", strategy="scaffold",
                                               samples=1, max_tokens=48, backend_options=opts),
                         Selection(prompt_ids=ids), name=f"bench {label}")
        job = enqueue_generation(eng, None, run.id)
        worker.run_one()
        j = get_job(eng, job.id)
        with Session(eng) as sess:
            first = sess.execute(select(func.min(Trace.created_at)).where(Trace.run_id == run.id)).scalar()
        out.append((label, (first - j.started_at).total_seconds()))
    POOL.close()
    for label, secs in out:
        print(f"start-to-first-trace, {label}: {secs:.1f} s" + ("  (goal <= 10 s)" if label == "warm engine" else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RATIONAL_TORCH_THREADS") or os.cpu_count()),
                    help="torch threads for both transformers runs (default: every core, as the product runs)")
    ap.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True,
                    help="vLLM enforce_eager for both vLLM runs (skips minutes of torch.compile on CPU)")
    ap.add_argument("--skip", default="", help="comma list of: vllm, transformers")
    ap.add_argument("--yield", dest="yield_", action="store_true", help="the yield table per strategy instead")
    ap.add_argument("--strategies", default="single,prefill,two_pass,few_shot,scaffold")
    ap.add_argument("--yield-max-tokens", type=int, default=160)
    ap.add_argument("--write-measured", action="store_true", help="store the dev table as the shipped measurement")
    ap.add_argument("--yield-engines", action="store_true", help="the default strategy's yield through each engine")
    ap.add_argument("--yield-prompts", type=int, default=60, help="dev prompts per behaviour for the yield runs")
    args = ap.parse_args()
    if args.yield_engines:
        bench_yield_engines(args)
        return
    if args.yield_:
        bench_yield(args)
        return
    from curation.backends.catalog import resolve_model

    model = resolve_model("smollm2-135m-instruct")
    convs = conversations(args.prompts)
    from curation.backends.choice import isa_line

    print(f"CPU: {isa_line()}  (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '-')}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')})")
    print(f"SmolLM2-135M-Instruct (float32), {len(convs)} prompts, greedy, max_tokens={args.max_tokens}, "
          f"best of {args.repeats}, torch threads={args.threads}, vLLM eager={args.eager}, cpus={os.cpu_count()}")
    skip = set(filter(None, args.skip.split(",")))
    timings: dict[str, list] = {}
    if "vllm" not in skip:
        timings.update(bench_vllm(model, convs, args))
    if "transformers" not in skip:
        timings.update(bench_transformers(model, convs, args))
    r: dict[str, tuple[float, int]] = {}
    for name, runs in timings.items():
        dt, tok = min(runs)  # best run: the one least disturbed by other load
        r[name] = (dt, tok)
        each = ", ".join(f"{t / d:.1f}" for d, t in runs)
        print(f"{name:28s} {tok:6d} tokens in {dt:7.2f} s = {tok / dt:8.1f} tokens/s  (runs: {each})", flush=True)

    def tps(name):
        dt, tok = r[name]
        return tok / dt

    if {"raw vllm.LLM.chat", "our vllm backend"} <= r.keys():
        print(f"ratio our vllm / raw vllm                  = {tps('our vllm backend') / tps('raw vllm.LLM.chat'):.3f}"
              " (goal >= 0.9)")
    if {"raw model.generate", "our transformers backend"} <= r.keys():
        print(f"ratio our transformers / raw generate      = "
              f"{tps('our transformers backend') / tps('raw model.generate'):.3f}")
    if {"our vllm backend", "our transformers backend"} <= r.keys():
        print(f"ratio vllm / transformers (our backends)   = "
              f"{tps('our vllm backend') / tps('our transformers backend'):.2f}")


if __name__ == "__main__":
    main()
