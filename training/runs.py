"""Training runs as data: create (and queue), list, follow, cancel, resume. The CLI and pages call these."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.errors import UserError
from core.vocabulary import JOB_ACTIVE
from curation.auth import check
from curation.export.spec import NAME_PATTERN, ExportFilter, ExportOptions
from db import jobs as jobrows
from db.engine import artifact_root
from db.models import ExportSnapshot, Job, TrainingCheckpoint, TrainingMetric, TrainingRun, utcnow
from training.config import build_config


class RunError(UserError):
    """A run that cannot be created, resumed or cancelled in its state; the message says why."""


def runs_root() -> Path:
    return artifact_root() / "runs"


def create_run(engine: Engine, *, base_model: str, method: str, export_name: str, preset: str | None = None,
               overrides: dict[str, Any] | None = None, export_spec: dict | None = None, name: str = "",
               created_by: Optional[int] = None, output_root: str | Path | None = None,
               project_id: int = 1, worker_label: str | None = None) -> tuple[TrainingRun, Job]:
    """Record a run and queue its job. With export_spec the job first builds that export (one-click flow);
    otherwise the export must already be ready. `created_by` None is the local operator (the CLI). With
    `worker_label` only a worker carrying that label (e.g. "gpu") takes the job."""
    check(engine, created_by, "train")
    worker_label = jobrows.worker_label(worker_label)
    preset, cfg = build_config(method, base_model, preset, overrides)
    with Session(engine) as s:
        snap = s.execute(select(ExportSnapshot).where(ExportSnapshot.project_id == project_id,
                                                      ExportSnapshot.name == export_name)).scalars().first()
    if export_spec is None:
        if snap is None or snap.status != "ready":
            raise RunError(f"export '{export_name}' does not exist or is not ready; run 'rational export' first")
        if snap.kind != method:
            raise RunError(f"export '{export_name}' is a {snap.kind} export; method {method} needs a {method} one")
    elif snap is not None:
        raise RunError(f"export '{export_name}' already exists; choose a new export name")
    with Session(engine, expire_on_commit=False) as s:
        run = TrainingRun(name=name, export_id=snap.id if snap else None, export_name=export_name,
                          base_model=base_model, method=method, preset=preset, config=cfg.to_dict(),
                          created_by=created_by)
        s.add(run)
        s.flush()
        run.output_dir = str(Path(output_root or runs_root()) / f"run-{run.id}")
        run.name = run.name or f"{method}-{run.id}"
        s.commit()
    params: dict[str, Any] = {"run_id": run.id}
    if export_spec is not None:
        params["export"] = export_spec
    job = jobrows.enqueue(engine, "train", params, created_by=created_by, requires_label=worker_label)
    with engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run.id).values(job_id=job.id))
    run.job_id = job.id
    return run, job


def resume_run(engine: Engine, run_id: int, *, overrides: dict[str, Any] | None = None,
               created_by: Optional[int] = None) -> Job:
    """Queue a cancelled or failed run again; it continues from its last checkpoint."""
    check(engine, created_by, "train")
    run = get_run(engine, run_id)
    if run is None:
        raise RunError(f"training run {run_id} does not exist")
    if not can_resume(run):
        raise RunError(f"run {run_id} is {run.status}; only cancelled or failed runs resume")
    config = run.config
    if overrides:
        from training.config import TrainConfig

        cfg = TrainConfig.from_dict(run.config).with_overrides(overrides)
        cfg.validate()
        config = cfg.to_dict()
    before = jobrows.get_job(engine, run.job_id) if run.job_id else None  # resume where it was meant to run
    job = jobrows.enqueue(engine, "train", {"run_id": run_id, "resume": True}, created_by=created_by,
                          requires_label=before.requires_label if before else None)
    with engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(
            status="queued", job_id=job.id, config=config, error=None, finished_at=None))
    return job


def cancel_run(engine: Engine, run_id: int, *, user_id: Optional[int] = None) -> None:
    check(engine, user_id, "train")
    run = get_run(engine, run_id)
    if run is None or run.job_id is None:
        raise RunError(f"training run {run_id} has no job to cancel")
    jobrows.request_cancel(engine, run.job_id)
    if jobrows.get_job(engine, run.job_id).status == "cancelled":  # it had not started yet
        set_status(engine, run_id, "cancelled", error="cancelled before start")


def set_status(engine: Engine, run_id: int, status: str, **values: Any) -> None:
    if status in ("succeeded", "failed", "cancelled"):
        values.setdefault("finished_at", utcnow())
    with engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(status=status, **values))


def reconcile(engine: Engine) -> int:
    """A run still `running` whose job already ended (its worker died and was reaped) is failed, visibly; the
    worker runs this as it reaps, pages as they list runs."""
    with engine.begin() as c:
        stuck = c.execute(select(TrainingRun.id, Job.status, Job.error).join(Job, Job.id == TrainingRun.job_id)
                          .where(TrainingRun.status.in_(("running", "queued")),
                                 Job.status.in_(("failed", "cancelled", "succeeded")))).all()
        for run_id, job_status, error in stuck:
            status = "cancelled" if job_status == "cancelled" else "failed"
            c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(
                status=status, finished_at=utcnow(), pid=None, error=error or f"its job ended ({job_status})"))
    return len(stuck)


def get_run(engine: Engine, run_id: int) -> Optional[TrainingRun]:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(TrainingRun, run_id)


def list_runs(engine: Engine, limit: int = 100) -> list[TrainingRun]:
    reconcile(engine)
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)).scalars())


def run_metrics(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    q = (select(TrainingMetric.step, TrainingMetric.kind, TrainingMetric.loss, TrainingMetric.learning_rate,
                TrainingMetric.grad_norm, TrainingMetric.tokens_per_s, TrainingMetric.epoch)
         .where(TrainingMetric.run_id == run_id).order_by(TrainingMetric.step, TrainingMetric.id))
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def run_checkpoints(engine: Engine, run_id: int) -> list[TrainingCheckpoint]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(TrainingCheckpoint).where(TrainingCheckpoint.run_id == run_id)
                              .order_by(TrainingCheckpoint.step)).scalars())


def cli_command(*, export_name: str, base_model: str, method: str, preset: str | None,
                flt: ExportFilter | None = None, overrides: dict[str, Any] | None = None,
                worker_label: str | None = None) -> str:
    """The CLI equivalent of the page's one click (shown on the page, LLaMA-Factory's 'preview command')."""
    import shlex

    parts = ["rational", "export", export_name, "--kind", method]
    for item in (flt.cli_items() if flt is not None else []):
        parts += ["--filter", item]
    train = ["rational", "train", "--export", export_name, "--base-model", base_model, "--method", method]
    if preset:
        train += ["--preset", preset]
    for k, v in (overrides or {}).items():
        train += ["--set", f"{k}={v}"]
    if worker_label:
        train += ["--worker-label", worker_label]
    return shlex.join(parts) + " && " + shlex.join(train + ["--wait"])


_NOISE = re.compile(r"(Warning:|warnings\.warn|^\s*warnings\.|\d+%\|.*\|| it/s\]|s/it\]|^\s*$)")


def readable_log(tail: str) -> str:
    """The trainer's own lines of a log tail: library warnings (and the source line each quotes) and tqdm bars
    are left out; the metrics the trainer prints ({'loss': …}), our lines and errors stay."""
    out, skip_next = [], False
    for line in tail.replace("\r", "\n").splitlines():
        if skip_next:
            skip_next = False
            if line.startswith((" ", "\t")):
                continue  # the source line a warning quotes
        if _NOISE.search(line):
            skip_next = "Warning:" in line
            continue
        out.append(line)
    return "\n".join(out)


def can_resume(run: TrainingRun) -> bool:
    """Only a cancelled or failed run resumes (from its last checkpoint, or from the start without one)."""
    return run.status in ("cancelled", "failed")


def is_active(run: TrainingRun) -> bool:
    return run.status in JOB_ACTIVE


def export_and_train(engine: Engine, *, user_id: Optional[int], export_name: str, kind: str, filter: dict,
                     base_model: str, preset: str | None = None, overrides: dict | None = None,
                     options: dict | None = None, worker_label: str | None = None) -> tuple[TrainingRun, Job]:
    """The page's one click: one queued job builds the snapshot, then trains on it."""
    check(engine, user_id, "train")
    if not NAME_PATTERN.match(export_name or ""):
        raise RunError(f"export name '{export_name}' must be letters, digits, '.', '_' or '-'")
    flt = ExportFilter.from_dict(filter)
    flt.validate()
    opts = ExportOptions.from_dict(options)
    opts.validate()
    return create_run(engine, base_model=base_model, method=kind, export_name=export_name, preset=preset,
                      overrides=overrides, created_by=user_id, worker_label=worker_label,
                      export_spec={"filter": flt.to_dict(), "options": opts.to_dict()})
