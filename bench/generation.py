"""Generation throughput on CPU with the embedded SmolLM2-135M-Instruct, same prompts and settings throughout:

  1. our vllm backend (engine in a runner subprocess)   vs  raw `vllm.LLM.chat`     (goal: ratio >= 0.9)
  2. our transformers backend                            vs  raw `model.generate`
  3. vllm                                                vs  transformers

Greedy decoding, one batch of N chat prompts (HarmBench-val behaviours under the rejection self-check prompt),
R timed repeats after a warm-up, raw and ours alternating (best run reported); tokens/s = generated tokens / wall seconds of the generate call.
Run: .venv/bin/python bench/generation.py [--prompts 16] [--max-tokens 64] [--threads 1] [--repeats 2]
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
    from curation.generation.strategies import REJECTION_SELF_CHECK
    from curation.generation.traceformat import DEFAULT_FORMAT

    path = ROOT / "curation" / "prompts" / "builtin" / "data" / "harmbench" / "harmbench_behaviors_text_val.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r["Behavior"] for r in csv.DictReader(fh) if r["FunctionalCategory"] == "standard"][:n]
    system = DEFAULT_FORMAT.fill(REJECTION_SELF_CHECK)
    return [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in rows]


class RawVLLM:
    """The raw baseline engine, alive in its own process (vLLM's venv) for the whole bench."""

    def __init__(self, model: str, convs, max_tokens: int, args):
        from curation.generation.backends.vllm_env import find_vllm_python

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
    from curation.generation.backends import ChatRequest, SamplingParams, make_backend

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

    from curation.generation.backends import ChatRequest, SamplingParams, make_backend

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RATIONAL_TORCH_THREADS") or 1),
                    help="torch threads for both transformers runs (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True,
                    help="vLLM enforce_eager for both vLLM runs (skips minutes of torch.compile on CPU)")
    ap.add_argument("--skip", default="", help="comma list of: vllm, transformers")
    args = ap.parse_args()
    from curation.generation.catalog import resolve_model

    model = resolve_model("smollm2-135m-instruct")
    convs = conversations(args.prompts)
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
