"""Job kind "loop": the Home page's quick start runs the RATIONAL loop in the worker, one stage = one step of
progress. Importing this module registers it."""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from curation.auth import check
from db.engine import artifact_root
from db.jobs import JobContext, enqueue, register_job_kind
from db.models import Job, User
from workflows.loop import LoopConfig, RationalLoop


@register_job_kind("loop", description="the RATIONAL loop end to end (prompts → traces → filter → train → eval)")
def run_loop(ctx: JobContext, **params) -> dict:
    cfg = LoopConfig.from_dict(params)

    def stage(done: int, total: int, msg: str) -> None:
        ctx.check_cancel()  # between batches and stages: a cancel stops the loop at the next step
        ctx.progress(done, total, msg)

    loop = RationalLoop(ctx.engine, cfg, log=ctx.log, stage_progress=stage, job_id=ctx.job_id)
    res = loop.run()
    report = loop.out / "report.md"  # relative to the artifact root where it lies there: the web app mounts it too
    try:
        report = report.resolve().relative_to(artifact_root())
    except ValueError:
        pass
    return {"report": report.as_posix(), "timings_s": res.get("timings_s"),
            "yield": {b: y.get("used") for b, y in (res.get("yield") or {}).items()}}


def enqueue_loop(engine: Engine, user: User | int | None, params: dict[str, Any] | None = None) -> Job:
    """Queue the loop (the default one, as `rational loop` runs it, unless given); the worker runs it with the
    user's authority."""
    me = check(engine, user, "train")  # it exports and trains
    uid = me.id if me else None
    cfg = LoopConfig.from_dict({**(params or {}), "acting_user": uid})
    cfg.validate()
    return enqueue(engine, "loop", cfg.to_dict(), created_by=uid)
