"""Job kinds for prompts: file imports, built-in sets and mutations. Importing this module registers them."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Engine

from core.errors import PermissionDenied
from curation.auth import check
from db.engine import artifact_root
from db.jobs import JobContext, enqueue, register_job_kind
from db.models import Job, User


def _progress(ctx: JobContext):
    return lambda done, total, phase: ctx.progress(done, total, phase)


@register_job_kind("import", description="Import a prompt file into a set")
def run_import(ctx: JobContext, *, path: str, config: dict, created_by: int | None = None,
               uploads_only: bool = False) -> dict:
    from curation.prompts.importer import ImportConfig, PromptImporter

    if uploads_only:  # again here: the file may have been swapped since it was queued; relative to this machine's
        path = check_upload(upload_area() / path)  # upload area (an absolute path stays absolute)
    importer = PromptImporter(ctx.engine, ImportConfig.from_dict(config), created_by=created_by, job_id=ctx.job_id)
    report = importer.run(path, progress=_progress(ctx))
    ctx.log(report.summary())
    return _result(report)


@register_job_kind("import_builtin", description="Install a built-in prompt set")
def run_import_builtin(ctx: JobContext, *, name: str, created_by: int | None = None) -> dict:
    from curation.prompts.builtin import import_builtin

    report = import_builtin(ctx.engine, name, progress=_progress(ctx), created_by=created_by, job_id=ctx.job_id)
    ctx.log(report.summary())
    return _result(report)


@register_job_kind("mutate", resumable=True,  # re-runs skip what is stored
                   description="Rewrite refuse prompts into jailbreak styles")
def run_mutate(ctx: JobContext, **params) -> dict:
    from curation.prompts.mutations import MutationConfig, run_mutations

    return run_mutations(ctx.engine, MutationConfig.from_dict(params), progress=_progress(ctx), log=ctx.log)


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


def upload_area() -> Path:
    """Where the web app keeps uploaded files: the only files a signed-in user may import."""
    return Path(os.path.abspath(artifact_root() / "uploads"))


def check_upload(path: str | os.PathLike) -> str:
    """`path` if it is a regular file in the upload area reached without symlinks; else PermissionDenied."""
    area = upload_area()
    full = Path(os.path.abspath(path))  # resolves '..' by name, so it cannot climb out of the area unseen
    try:
        parts = full.relative_to(area).parts
    except ValueError:
        raise PermissionDenied(f"{path}: only uploaded files can be imported from the web app") from None
    here = area
    for part in parts:
        here = here / part
        if here.is_symlink():
            raise PermissionDenied(f"{path}: a symbolic link in the upload area is not imported")
    if not parts or not full.is_file():
        raise ValueError(f"{path}: not an uploaded file")
    return str(full)


def enqueue_import(engine: Engine, user: User | int | None, path: str, config) -> Job:
    """Queue an import of `path` under an ImportConfig (validated here, so a bad mapping never becomes a job).
    A signed-in user (the web app) may only import uploaded files; the local operator (None, the CLI) any path."""
    config.validate()
    me = check(engine, user, "manage_prompts")
    uid = me.id if me else None
    params = {"path": str(path), "config": config.to_dict(), "created_by": uid}
    if user is not None:  # stored relative to the upload area: a worker may mount the artifact root elsewhere
        params.update(path=Path(check_upload(path)).relative_to(upload_area()).as_posix(), uploads_only=True)
    return enqueue(engine, "import", params, created_by=uid)


def enqueue_builtin(engine: Engine, user: User | int | None, name: str) -> Job:
    from curation.prompts.builtin import BUILTIN_SETS

    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in set '{name}'; see 'rational sets list'")
    me = check(engine, user, "manage_prompts")
    uid = me.id if me else None
    return enqueue(engine, "import_builtin", {"name": name, "created_by": uid}, created_by=uid)


def enqueue_mutation(engine: Engine, user: User | int | None, config) -> Job:
    config.validate()
    me = check(engine, user, "generate")
    return enqueue(engine, "mutate", config.to_dict(), created_by=me.id if me else None)

