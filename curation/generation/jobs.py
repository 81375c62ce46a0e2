"""Job kind `generate`. Importing this module registers it with db.jobs."""
from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from curation.auth import check
from db import jobs as jobrows
from db.jobs import JobContext, register_job_kind
from db.models import GenerationRun, Job, User


def _progress(ctx: JobContext):
    return lambda done, total, msg: ctx.progress(done, total, msg)


@register_job_kind("generate", resumable=True, description="Generate self-check reasoning traces")
def run_generate(ctx: JobContext, *, run_id: int, **_ignored) -> dict:
    from curation.generation.runs import run_generation

    return run_generation(ctx.engine, run_id, progress=_progress(ctx), log=ctx.log)


def enqueue_generation(engine: Engine, user: User | int | None, run_id: int, *,
                       worker_label: str | None = None) -> Job:
    """Queue a run's generation and link the job to the run; with `worker_label`, for workers with that label."""
    me = check(engine, user, "generate")
    job = jobrows.enqueue(engine, "generate", {"run_id": run_id}, created_by=me.id if me else None,
                          requires_label=worker_label)
    with Session(engine) as s:
        run = s.get(GenerationRun, run_id)
        run.job_id = job.id
        s.add(run)
        s.commit()
    return job
