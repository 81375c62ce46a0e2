"""Job kind `export`: the worker builds a snapshot with progress. Importing this module registers it."""
from __future__ import annotations

from typing import Optional

from sqlalchemy.engine import Engine

from curation.auth import check
from curation.export.snapshot import ExportResult, check_request, create_export
from curation.export.spec import ExportFilter, ExportOptions
from db.jobs import JobContext, enqueue, register_job_kind
from db.models import Job, User


@register_job_kind("export", description="Build an export snapshot (SFT or DPO) from reviewed traces")
def run_export(ctx: JobContext, *, name: str, kind: str, filter: dict | None = None, options: dict | None = None,
               formats: list[str] | None = None, out_dir: str | None = None, created_by: int | None = None) -> dict:
    res = create_export(ctx.engine, name, kind, ExportFilter.from_dict(filter), ExportOptions.from_dict(options),
                        formats=formats, out_dir=out_dir, created_by=created_by, job_id=ctx.job_id,
                        progress=lambda done, total, phase: ctx.progress(done, total, phase))
    ctx.log(res.summary())
    return result_dict(res)


def result_dict(res: ExportResult) -> dict:
    return {"export_id": res.id, "name": res.name, "path": res.path, "sha256": res.sha256, "rows": res.row_count,
            "counts": res.counts, "summary": res.summary(),
            "contamination": {k: v for k, v in res.contamination.items() if k != "overlaps"}}


def enqueue_export(engine: Engine, user: User | int | None, *, name: str, kind: str, flt: ExportFilter,
                   options: ExportOptions, formats: list[str], out_dir: Optional[str] = None) -> Job:
    formats = check_request(name, kind, formats)
    flt.validate()
    options.validate()
    me = check(engine, user, "train")
    uid = me.id if me else None
    return enqueue(engine, "export", {"name": name, "kind": kind, "filter": flt.to_dict(), "options": options.to_dict(),
                                      "formats": formats, "out_dir": out_dir, "created_by": uid}, created_by=uid)
