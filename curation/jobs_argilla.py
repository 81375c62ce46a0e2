"""Job kinds argilla_push / argilla_pull: the worker runs Argilla syncs with progress. Importing registers them."""
from __future__ import annotations

from typing import Any, Optional

from db.jobs import JobContext, register_job_kind


def _progress(ctx: JobContext):
    return lambda done, total, message: ctx.progress(done, total, message)


@register_job_kind("argilla_push", description="Push a queue's or a filter's traces to an Argilla dataset")
def run_push(ctx: JobContext, *, created_by: int, queue: Optional[str] = None, filter: Optional[dict] = None,
             dataset: Optional[str] = None, overlap: Optional[int] = None) -> dict[str, Any]:
    from curation import argilla_sync

    res = argilla_sync.push(ctx.engine, created_by, queue=queue, flt=filter, dataset=dataset, overlap=overlap,
                            progress=_progress(ctx))
    ctx.log(f"pushed {res['pushed']} traces to {res['workspace']}/{res['dataset']} (overlap {res['overlap']})")
    return res


@register_job_kind("argilla_pull", description="Pull Argilla responses back as annotations")
def run_pull(ctx: JobContext, *, created_by: int, dataset: Optional[str] = None) -> dict[str, Any]:
    from curation import argilla_sync

    res = argilla_sync.pull(ctx.engine, created_by, dataset=dataset, progress=_progress(ctx))
    ctx.log(f"pulled {', '.join(res['datasets']) or 'no datasets'}: {res['annotated']} annotated, "
            f"{res['skipped']} skipped, {res['conflicts']} conflicts, {res['invalid']} invalid, "
            f"{res['unchanged']} already pulled, {res['drafts']} drafts left")
    return res
