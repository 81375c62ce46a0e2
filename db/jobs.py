"""The job queue: enqueue, claim (SKIP LOCKED on PostgreSQL, a conditional update on SQLite), progress,
reaping, and the one runner that executes a claimed job (the worker and every `--wait` use it).

Handlers for job kinds live beside their area and register here; HANDLER_MODULES is the one table of which module
holds each kind, imported on first use, so no process can miss a kind for want of an import.
"""
from __future__ import annotations

import os
import re
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.errors import UserError
from core.vocabulary import JobStatus
from db.engine import write_engine
from db.models import Job, utcnow

LOG_TAIL_CHARS = 8000


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Callable[..., Optional[dict]]  # handler(ctx: JobContext, **params) -> result dict
    resumable: bool = False
    description: str = ""


JOB_KINDS: dict[str, JobKind] = {}
# Every job kind and the module whose import registers it (by name: the handlers live in the layers above).
HANDLER_MODULES: dict[str, str] = {
    "import": "curation.prompts.jobs", "import_builtin": "curation.prompts.jobs", "mutate": "curation.prompts.jobs",
    "generate": "curation.generation.jobs", "label": "curation.judges.jobs", "export": "curation.export.jobs",
    "argilla_push": "curation.review.argilla.jobs", "argilla_pull": "curation.review.argilla.jobs",
    "train": "training.jobs", "evaluate": "evaluation.jobs", "loop": "workflows.jobs",
}


def register_job_kind(name: str, *, resumable: bool = False, description: str = ""):
    def deco(fn):
        if HANDLER_MODULES.get(name) != fn.__module__:
            raise LookupError(f"job kind '{name}' registered from {fn.__module__}: add it to db.jobs.HANDLER_MODULES")
        JOB_KINDS[name] = JobKind(name, fn, resumable, description)
        return fn

    return deco


def job_kind(name: str) -> Optional[JobKind]:
    """The kind's handler, importing the module that registers it on first use; None for an unknown kind."""
    if name not in JOB_KINDS and name in HANDLER_MODULES:
        import importlib

        importlib.import_module(HANDLER_MODULES[name])
    return JOB_KINDS.get(name)


def load_job_kinds() -> dict[str, JobKind]:
    """Every kind in the table, registered."""
    for name in HANDLER_MODULES:
        job_kind(name)
    return JOB_KINDS


_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


def worker_label(value: str | None) -> str | None:
    """A worker label as stored ("gpu", "a100-80g"); None for none. Raises UserError on anything else."""
    value = (value or "").strip().lower()
    if not value:
        return None
    if not _LABEL.fullmatch(value):
        raise UserError(f"worker label '{value[:60]}': use 1-40 lowercase letters, digits, '.', '_' or '-'")
    return value


def enqueue(engine: Engine, kind: str, params: dict[str, Any] | None = None, *, created_by: int | None = None,
            resumable: bool | None = None, requires_label: str | None = None) -> Job:
    if resumable is None:
        known = job_kind(kind)
        resumable = known.resumable if known else False
    with Session(engine, expire_on_commit=False) as s:
        job = Job(kind=kind, params=params or {}, created_by=created_by, resumable=resumable,
                  requires_label=worker_label(requires_label))
        s.add(job)
        s.commit()
        s.refresh(job)
        return job


def get_job(engine: Engine, job_id: int) -> Job | None:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(Job, job_id)


def claim_next(engine: Engine, worker_id: str, kinds: list[str] | None = None,
               labels: list[str] | None = None) -> Job | None:
    """Atomically move the oldest queued job this worker may run (one of its kinds; no required label, or one of
    its labels) to running for it; None when there is none."""
    with write_engine(engine).begin() as conn:
        q = select(Job.id).where(Job.status == JobStatus.QUEUED)
        if kinds:
            q = q.where(Job.kind.in_(kinds))
        q = q.where(or_(Job.requires_label.is_(None), Job.requires_label.in_(labels or [])))
        q = q.order_by(Job.id).limit(1)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job_id = conn.execute(q).scalar()
        if job_id is None or not _take(conn, job_id, worker_id):
            return None  # empty, or another worker won the race (the caller simply asks again)
    return get_job(engine, job_id)


def claim(engine: Engine, job_id: int, worker_id: str) -> Job | None:
    """Claim one particular queued job; None when it is not queued (another worker has it, or it ended)."""
    with write_engine(engine).begin() as conn:
        if not _take(conn, job_id, worker_id):
            return None
    return get_job(engine, job_id)


def _take(conn, job_id: int, worker_id: str) -> bool:
    now = utcnow()
    res = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)  # the conditional update is the lock on SQLite
        .values(status=JobStatus.RUNNING, worker_id=worker_id, started_at=now, heartbeat_at=now,
                attempts=Job.attempts + 1, message="started"))
    return res.rowcount == 1


def heartbeat(engine: Engine, job_id: int) -> bool:
    """Record liveness; returns whether cancellation was requested."""
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=utcnow()))
        return bool(conn.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar())


def set_progress(engine: Engine, job_id: int, done: int, total: int | None = None, message: str | None = None) -> None:
    values: dict[str, Any] = {"progress_done": done, "heartbeat_at": utcnow()}
    if total is not None:
        values["progress_total"] = total
    if message is not None:
        values["message"] = message[:500]
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(**values))


def append_log(engine: Engine, job_id: int, line: str) -> None:
    with Session(write_engine(engine)) as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        job.log_tail = (job.log_tail + line.rstrip("\n") + "\n")[-LOG_TAIL_CHARS:]
        s.add(job)
        s.commit()


def finish(engine: Engine, job_id: int, *, status: str, result: dict | None = None, error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Job).where(Job.id == job_id)
            .values(status=status, result=result, error=error, finished_at=utcnow(), message=status)
        )


def request_cancel(engine: Engine, job_id: int) -> None:
    """Queued jobs are cancelled at once; running ones see the flag at their next heartbeat."""
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                     .values(status="cancelled", finished_at=utcnow(), message="cancelled before start"))
        conn.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))


def reap_stale(engine: Engine, timeout_s: float) -> list[int]:
    """Jobs whose worker stopped heart-beating: re-queue the resumable ones, fail the rest with the reason."""
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    reason = f"worker stopped responding (no heartbeat for more than {timeout_s:.0f} s)"
    with write_engine(engine).begin() as conn:
        stale = conn.execute(
            select(Job.id, Job.resumable, Job.worker_id)
            .where(Job.status == "running", Job.heartbeat_at < cutoff)
        ).all()
        for job_id, resumable, worker in stale:
            guard = (Job.id == job_id, Job.status == "running", Job.heartbeat_at < cutoff)
            if resumable:
                conn.execute(update(Job).where(*guard).values(
                    status="queued", worker_id=None, message=f"re-queued: {reason} (was {worker})"))
            else:
                conn.execute(update(Job).where(*guard).values(
                    status="failed", error=f"{reason}; last worker {worker}", finished_at=utcnow(), message="failed"))
    return [row[0] for row in stale]


def waiting_reason(engine: Engine, job: Job, *, fresh_s: float = 60.0) -> str:
    """Why a queued job has not started, in one line: the jobs ahead of it, what the workers are busy with (a
    recent heartbeat), or that no worker has been seen, and the worker label it needs."""
    since = utcnow() - timedelta(seconds=fresh_s)
    with engine.connect() as conn:
        ahead = conn.execute(select(func.count(Job.id)).where(Job.status == "queued", Job.id < job.id)).scalar_one()
        busy = conn.execute(select(Job.id, Job.kind, Job.worker_id).where(
            Job.status == "running", Job.heartbeat_at >= since).order_by(Job.id)).all()
    needs = f" It needs a worker started with `--label {job.requires_label}`." if job.requires_label else ""
    queue = f"{ahead} job{'s' if ahead != 1 else ''} ahead of it. " if ahead else ""
    if busy:
        doing = ", ".join(f"job {i} ({k})" for i, k, _ in busy[:3]) + (" …" if len(busy) > 3 else "")
        workers = len({w for _, _, w in busy})
        return (f"Queued: {queue}{workers} worker{'s are' if workers != 1 else ' is'} busy with {doing}; this job "
                f"starts when one is free.{needs}")
    return (f"Queued: {queue}no worker is running a job right now. If none is started, start one with "
            f"`rational worker`.{needs}")


def job_status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(Job.status, func.count(Job.id)).group_by(Job.status)).all()
    return {status: n for status, n in rows}


class JobCancelled(Exception):
    """Raised inside a handler when the job's cancel flag is seen."""


class JobContext:
    """What a handler gets: throttled progress, a log tail, and cancellation checks."""

    def __init__(self, engine: Engine, job: Job, min_interval_s: float = 0.5):
        self.engine = engine
        self.job = job
        self.job_id = job.id
        self.params = dict(job.params or {})
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self.cancel_seen = False

    def progress(self, done: int, total: int | None = None, message: str | None = None, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.min_interval_s or (total is not None and done >= total):
            self._last = now
            set_progress(self.engine, self.job_id, done, total, message)
            self.check_cancel()

    def log(self, line: str) -> None:
        append_log(self.engine, self.job_id, line)

    def check_cancel(self) -> None:
        if self.cancel_seen or get_job(self.engine, self.job_id).cancel_requested:
            self.cancel_seen = True
            raise JobCancelled(f"job {self.job_id} cancelled")


# -- the runner -------------------------------------------------------------------------------------------------
def execute(engine: Engine, job: Job, *, heartbeat_s: float = 5.0) -> Job:
    """Run a claimed job's handler with a heartbeat beside it, and record how it ended: its result, or the error
    (with the partial result a handler attaches to its exception, e.g. an import's row errors)."""
    ctx = JobContext(engine, job)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                heartbeat(engine, job.id)
            except Exception:
                pass  # a missed beat is tolerated; the reaper only acts after its timeout

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        kind = job_kind(job.kind)
        if kind is None:
            raise LookupError(f"no handler for job kind '{job.kind}'")
        result = kind.handler(ctx, **ctx.params)
        finish(engine, job.id, status=JobStatus.SUCCEEDED, result=result)
    except JobCancelled:
        finish(engine, job.id, status=JobStatus.CANCELLED, error="cancelled by request")
    except Exception as e:  # a handler's failure is the job's failure, never the runner's
        ctx.log(traceback.format_exc()[-4000:])
        finish(engine, job.id, status=JobStatus.FAILED, result=getattr(e, "result", None),
               error=f"{type(e).__name__}: {e}"[:4000])
    finally:
        stop.set()
        thread.join(timeout=heartbeat_s + 1)
    return get_job(engine, job.id)


def run_job_here(engine: Engine, job_id: int, *, heartbeat_s: float = 5.0) -> Job:
    """Run exactly this queued job in this process (the CLI's --wait). Raises when it is not queued."""
    job = claim(engine, job_id, f"cli:{os.getpid()}")
    if job is None:
        raise JobNotQueued(f"job {job_id} is not queued (another worker may have claimed it)")
    return execute(engine, job, heartbeat_s=heartbeat_s)


class JobNotQueued(RuntimeError):
    """run_job_here was asked to run a job that is running elsewhere or has ended."""


def wait_for(engine: Engine, job_id: int, poll_s: float = 1.0, on_poll: Callable[[Job], None] | None = None) -> Job:
    """Poll a job until it ends."""
    while True:
        job = get_job(engine, job_id)
        if on_poll:
            on_poll(job)
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return job
        time.sleep(poll_s)
