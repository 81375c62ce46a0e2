"""Job kind `label`: the worker auto-labels traces. Importing this module registers it."""
from __future__ import annotations

from typing import Optional

from sqlalchemy.engine import Engine

from curation.auth import check
from curation.judges.registry import DEFAULT_JUDGE, JUDGE_NAMES
from db import jobs as jobrows
from db.jobs import JobContext, register_job_kind
from db.models import Job, User


@register_job_kind("label", resumable=True, description="Auto-label traces (a refusal judge deciding)")
def run_label(ctx: JobContext, *, set_name: Optional[str] = None, run_id: Optional[int] = None,
              judge: str = DEFAULT_JUDGE, model: Optional[str] = None, backend: str = "transformers",
              backend_options: Optional[dict] = None) -> dict:
    from curation.backends import make_backend
    from curation.backends.catalog import resolve_model
    from curation.judges.labels import label_traces

    be = None
    if judge == "llm":
        be = make_backend(backend, resolve_model(model) if backend != "openai" else model, **(backend_options or {}))
    try:
        counts = label_traces(ctx.engine, set_name=set_name, run_id=run_id, judge=judge, backend=be,
                              progress=lambda done, total, msg: ctx.progress(done, total, msg))
    finally:
        if be is not None:
            be.close()
    ctx.log(f"labelled {counts['traces']} traces with {counts['judge']}: {counts['auto_approve_candidates']} "
            f"auto-approve candidates, {counts['inconsistent']} inconsistent")
    return counts


def enqueue_label(engine: Engine, user: User | int | None, *, set_name: Optional[str] = None,
                  run_id: Optional[int] = None, judge: str = DEFAULT_JUDGE, model: Optional[str] = None,
                  backend: str = "transformers", backend_options: Optional[dict] = None) -> Job:
    if judge not in JUDGE_NAMES:
        raise ValueError(f"judge '{judge}' is not one of {', '.join(JUDGE_NAMES)}")
    if judge == "llm" and not model:
        raise ValueError("the llm judge needs a model")
    me = check(engine, user, "generate")
    return jobrows.enqueue(engine, "label", {"set_name": set_name, "run_id": run_id, "judge": judge, "model": model,
                                             "backend": backend, "backend_options": backend_options or {}},
                           created_by=me.id if me else None)
