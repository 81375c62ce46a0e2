"""`backend auto` (curation.backends.choice), the transformers backend's shared-prefix cache and the generation
ETA, on the tiny random-weight model with real transformers, real SQLite and the real probe cache file.

Where a test needs engines of known speed (vLLM's minutes-long start, a CPU without AVX-512), the probe function is
replaced by one returning measured figures from docs: such engines cannot be conjured on this machine on demand.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import app
from curation.backends import ChatRequest, SamplingParams, make_backend
from curation.backends import choice as ch
from curation.backends.engines import POOL
from curation.backends.hf import shared_prefix
from curation.generation.config import GenerationConfig, Selection
from curation.generation.runs import create_run, remaining_s, run_generation
from db.models import GenerationRun, Trace
from tests.test_generation import add_prompts

AVX2 = {"model": "AMD EPYC", "flags": ["avx2"], "cores": 2}
AMX = {"model": "Intel Xeon", "flags": ["avx2", "avx512f", "avx512_bf16", "amx_tile"], "cores": 2}
# tokens/s and start seconds measured on 2 cores (the CPUs issue; docs/results/rational_loop)
SPEED = {("AMD EPYC", "transformers"): (100.0, 3.0), ("AMD EPYC", "vllm"): (37.0, 150.0),
         ("Intel Xeon", "transformers"): (180.0, 3.0), ("Intel Xeon", "vllm"): (1429.0, 90.0)}


class Probes:
    """Stands in for `choice.probe` on a CPU this machine is not; counts the probes it was asked for."""

    def __init__(self, monkeypatch, info):
        self.calls: list[str] = []
        self.info = info
        monkeypatch.setattr(ch, "cpu", lambda: self.info)

    def __call__(self, engine: str, model_path: str) -> ch.Probe:
        self.calls.append(engine)
        tps, start = SPEED[(self.info["model"], engine)]
        return ch.Probe(engine, tps, start, "now")


def test_auto_picks_transformers_on_avx2_and_vllm_on_amx_for_a_big_job(monkeypatch, tiny_model_dir):
    probes = Probes(monkeypatch, AVX2)
    got = ch.choose(str(tiny_model_dir), 150_000, engines=["transformers", "vllm"], run_probe=probes)
    assert got.engine == "transformers" and probes.calls == ["transformers", "vllm"]
    assert "AMD EPYC" in got.reason and "37 tok/s" in got.reason
    probes.info = AMX  # another CPU: its own probes, not the AVX2 machine's
    got = ch.choose(str(tiny_model_dir), 150_000, engines=["transformers", "vllm"], run_probe=probes)
    assert got.engine == "vllm" and probes.calls[2:] == ["transformers", "vllm"]


def test_probes_are_cached_per_cpu_engine_and_model(monkeypatch, tiny_model_dir, tmp_path):
    probes = Probes(monkeypatch, AVX2)
    ch.choose(str(tiny_model_dir), 150_000, engines=["transformers", "vllm"], run_probe=probes)
    again = ch.choose(str(tiny_model_dir), 150_000, engines=["transformers", "vllm"], run_probe=probes)
    assert probes.calls == ["transformers", "vllm"] and again.engine == "transformers"
    stored = json.loads(ch.cache_file().read_text())
    assert len(stored) == 2 and all("AMD EPYC" in k for k in stored)
    # new weights in the same folder are another model: measured again
    (tiny_model_dir / "config.json").touch()
    ch.choose(str(tiny_model_dir), 150_000, engines=["transformers", "vllm"], run_probe=probes)
    assert probes.calls[2:] == ["transformers", "vllm"]


def test_a_small_job_never_pays_for_a_vllm_start(monkeypatch, tiny_model_dir):
    probes = Probes(monkeypatch, AMX)
    got = ch.choose(str(tiny_model_dir), 2_000, engines=["transformers", "vllm"], run_probe=probes)
    assert got.engine == "transformers" and probes.calls == ["transformers"]  # 11 s of work < vLLM's start
    assert "not probed" in got.reason


def test_an_engine_that_fails_is_recorded_and_never_chosen(monkeypatch, tiny_model_dir):
    probes = Probes(monkeypatch, AVX2)

    def probe(engine, path):
        return ch.Probe(engine, 0.0, 1.0, "now", "BackendError: no python") if engine == "vllm" \
            else probes(engine, path)

    got = ch.choose(str(tiny_model_dir), 10**7, engines=["transformers", "vllm"], run_probe=probe)
    assert got.engine == "transformers" and got.probes["vllm"]["error"]


def test_the_real_probe_measures_transformers_on_the_tiny_model(tiny_model_dir):
    try:
        p = ch.probe("transformers", str(tiny_model_dir))
    finally:
        POOL.close()
    assert p.error is None and p.tokens_per_s > 0 and p.start_s >= 0
    assert ch.cpu()["cores"] >= 1 and ch.isa_line()


def test_shared_prefix_leaves_each_row_a_token():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert shared_prefix([[9, 2], [1, 2]]) == 0


def test_prefix_cache_gives_the_same_greedy_tokens_as_plain_padding(tiny_model_dir, monkeypatch):
    """A long shared system prompt, prompts of different lengths: the cached-prefix path must answer exactly as
    left padding does (a wrong position or mask changes a random model's tokens at once)."""
    import curation.backends.hf as hf

    system = "You are a careful assistant. " * 12
    convs = [({"role": "system", "content": system}, {"role": "user", "content": u})
             for u in ("hi", "tell me a long story about a cat and a dog", "why?", "count to ten slowly please")]
    reqs = [ChatRequest(c, SamplingParams(max_tokens=12)) for c in convs]
    be = make_backend("transformers", str(tiny_model_dir), batch_size=8)
    rows = [be.tokenizer(be.render(r), add_special_tokens=False)["input_ids"] for r in reqs]
    assert shared_prefix(rows) >= hf.MIN_SHARED_PREFIX  # the fast path is the one under test
    import torch

    with torch.inference_mode():  # the next-token distribution of every row, both ways
        inputs = be._inputs(rows)
        assert be._cache_kwarg in inputs  # the shared prefix came from the cache
        cache, mask = inputs[be._cache_kwarg], inputs["attention_mask"]
        done = cache.get_seq_length()  # generate() feeds only what the cache does not hold, at mask positions
        fast = be.hf_model(input_ids=inputs["input_ids"][:, done:], attention_mask=mask, **{be._cache_kwarg: cache},
                           position_ids=(mask.cumsum(-1) - 1).clamp(min=0)[:, done:]).logits[:, -1]
        enc = be.tokenizer([be.render(r) for r in reqs], return_tensors="pt", padding=True, add_special_tokens=False)
        slow = be.hf_model(**enc, position_ids=(enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
    assert torch.allclose(fast, slow, atol=1e-4), (fast - slow).abs().max()
    cached = [r.completions[0].text for r in be.generate(reqs)]
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**6)
    plain = [r.completions[0].text for r in make_backend("transformers", str(tiny_model_dir),
                                                         batch_size=8).generate(reqs)]
    assert cached == plain


def test_eta_waits_for_a_rate_and_uses_the_probe_meanwhile():
    # one sample back after 13.5 minutes is no rate: the probe's figure stands in
    assert remaining_s(495, 1, 810.0, 100, probe_tps=100.0) == pytest.approx(495.0)
    assert remaining_s(495, 1, 810.0, 100, probe_tps=None) is None
    assert remaining_s(100, 50, 50.0, 100, probe_tps=1.0) == pytest.approx(100.0)  # own rate once known


def test_a_generation_run_with_auto_records_the_engine_and_why(sqlite_engine, tiny_model_dir):
    pids = add_prompts(sqlite_engine, "auto_set", [("hello there", "comply"), ("what is two plus two", "comply")])
    cfg = GenerationConfig(model=str(tiny_model_dir), backend="auto", strategy="single", samples=1, max_tokens=6)
    run = create_run(sqlite_engine, cfg, Selection(prompt_ids=pids))
    try:
        run_generation(sqlite_engine, run.id)
    finally:
        POOL.close()
    with Session(sqlite_engine) as s:
        stored = s.get(GenerationRun, run.id)
        backends = set(s.execute(select(Trace.backend).where(Trace.run_id == run.id)).scalars())
    assert stored.backend == "transformers" and backends == {"transformers"}
    assert "fastest predicted" in stored.params["engine_choice"] and stored.status == "succeeded"


def test_doctor_prints_the_cpu_the_probes_and_the_choice(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(ch, "installed", lambda: ["transformers"])
    try:
        res = CliRunner().invoke(app, ["doctor", "--model", str(tiny_model_dir), "--probe", "--tokens", "1000"])
    finally:
        POOL.close()
    assert res.exit_code == 0, res.output
    assert "CPU:" in res.output and "auto picks transformers" in res.output
    assert "not yet" not in res.output.split("auto picks")[-1]


def test_cli_progress_outside_a_terminal_prints_each_stage_and_throttles(capsys):
    from app.cli.common import live_progress

    with live_progress("loop", every_s=3600) as show:
        show(0, 6, "engine: loading / converting the model")
        show(2, 6, "generation: 1/512 samples · 5 tok/s · ETA 8:00")
        show(2, 6, "generation: 9/512 samples · 60 tok/s · ETA 7:00")  # same stage, too soon: no line
        show(5, 6, "evaluation base harmful: 32/193 answered")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["loop: engine: loading / converting the model",
                                         "loop: generation: 1/512 samples · 5 tok/s · ETA 8:00",
                                         "loop: evaluation base harmful: 32/193 answered"]
    assert captured.err == ""  # stderr keeps only a one-line error


@pytest.mark.vllm
def test_vllm_cpu_runs_float32_where_the_cpu_has_no_native_bfloat16(vllm_python):
    """The real vllm_runner in vLLM's own interpreter: "auto" becomes float32 on a CPU without AVX512-BF16/AMX
    (bfloat16 emulated there ran 4.6x slower), and stays "auto" where bfloat16 is native; an explicit dtype
    always stands."""
    import subprocess

    from curation.backends.vllm_offline import RUNNER

    code = ("import sys; sys.path.insert(0, sys.argv[1]); from vllm_runner import engine_dtype; "
            "print(engine_dtype('auto'), engine_dtype('bfloat16'))")
    res = subprocess.run([vllm_python, "-c", code, str(RUNNER.parent)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    native = bool({"avx512_bf16", "amx_bf16"} & set(ch.cpu()["flags"]))
    assert res.stdout.split()[-2:] == ["auto" if native else "float32", "bfloat16"]
