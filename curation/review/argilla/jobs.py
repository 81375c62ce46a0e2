"""Job kinds argilla_push / argilla_pull: the worker runs Argilla syncs with progress. Importing registers them."""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.auth import require
from db.jobs import JobContext, enqueue, register_job_kind
from db.models import Job


def _progress(ctx: JobContext):
    return lambda done, total, message: ctx.progress(done, total, message)


@register_job_kind("argilla_push", description="Push a queue's or a filter's traces to an Argilla dataset")
def run_push(ctx: JobContext, *, created_by: int, queue: Optional[str] = None, filter: Optional[dict] = None,
             dataset: Optional[str] = None, overlap: Optional[int] = None) -> dict[str, Any]:
    from curation.review.argilla.push import push

    res = push(ctx.engine, created_by, queue=queue, flt=filter, dataset=dataset, overlap=overlap,
               progress=_progress(ctx))
    ctx.log(f"pushed {res['pushed']} traces to {res['workspace']}/{res['dataset']} (overlap {res['overlap']})")
    return res


@register_job_kind("argilla_pull", description="Pull Argilla responses back as annotations")
def run_pull(ctx: JobContext, *, created_by: int, dataset: Optional[str] = None) -> dict[str, Any]:
    from curation.review.argilla.pull import pull

    res = pull(ctx.engine, created_by, dataset=dataset, progress=_progress(ctx))
    ctx.log(f"pulled {', '.join(res['datasets']) or 'no datasets'}: {res['annotated']} annotated, "
            f"{res['skipped']} skipped, {res['conflicts']} conflicts, {res['invalid']} invalid, "
            f"{res['unchanged']} already pulled, {res['drafts']} drafts left")
    return res


def enqueue_push(engine: Engine, user, *, queue: Optional[str] = None, flt: Optional[dict] = None,
                 dataset: Optional[str] = None, overlap: Optional[int] = None) -> Job:
    """Queue a push for the worker; the acting user must be allowed to (the job acts with their authority)."""
    if (queue is None) == (flt is None):
        raise ValueError("give exactly one of a queue name or a filter")
    with Session(engine) as s:
        me = require(s, user, "manage_queues")
    return enqueue(engine, "argilla_push", {"created_by": me.id, "queue": queue, "filter": flt,
                                            "dataset": dataset, "overlap": overlap}, created_by=me.id)


def enqueue_pull(engine: Engine, user, *, dataset: Optional[str] = None) -> Job:
    with Session(engine) as s:
        me = require(s, user, "manage_queues")
    return enqueue(engine, "argilla_pull", {"created_by": me.id, "dataset": dataset}, created_by=me.id)
