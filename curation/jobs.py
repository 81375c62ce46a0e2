"""Job kinds owned by curation/. Importing this module registers them with db.jobs."""
from __future__ import annotations

from db.jobs import JobContext, register_job_kind


def _progress(ctx: JobContext):
    return lambda done, total, phase: ctx.progress(done, total, phase)


@register_job_kind("import", description="Import a prompt file into a set")
def run_import(ctx: JobContext, *, path: str, config: dict, created_by: int | None = None) -> dict:
    from curation.importer import ImportConfig, PromptImporter

    importer = PromptImporter(ctx.engine, ImportConfig.from_dict(config), created_by=created_by, job_id=ctx.job_id)
    report = importer.run(path, progress=_progress(ctx))
    ctx.log(report.summary())
    return _result(report)


@register_job_kind("import_builtin", description="Install a built-in prompt set")
def run_import_builtin(ctx: JobContext, *, name: str, created_by: int | None = None) -> dict:
    from curation.builtin import import_builtin

    report = import_builtin(ctx.engine, name, progress=_progress(ctx), created_by=created_by, job_id=ctx.job_id)
    ctx.log(report.summary())
    return _result(report)


def _result(report) -> dict:
    if report.status != "succeeded":
        raise ImportRejected(report)
    return {"import_id": report.import_id, "inserted": report.inserted, "duplicates": report.duplicates,
            "invalid": report.invalid, "rows_read": report.rows_read, "errors": report.errors[:200],
            "warnings": report.warnings[:50], "summary": report.summary()}


class ImportRejected(Exception):
    """An all-or-nothing import that found invalid rows: the job fails and the report says why."""

    def __init__(self, report):
        super().__init__(report.summary())
        self.result = {"import_id": report.import_id, "inserted": 0, "invalid": report.invalid,
                       "rows_read": report.rows_read, "errors": report.errors[:200], "summary": report.summary()}
