"""Job rows: enqueue, claim (SKIP LOCKED on PostgreSQL, a conditional update on SQLite), progress, reaping.

Handlers for job kinds live in curation/ and training/ and register here, so the worker knows one registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

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


def register_job_kind(name: str, *, resumable: bool = False, description: str = ""):
    def deco(fn):
        JOB_KINDS[name] = JobKind(name, fn, resumable, description)
        return fn

    return deco


def enqueue(engine: Engine, kind: str, params: dict[str, Any] | None = None, *, created_by: int | None = None,
            resumable: bool | None = None) -> Job:
    if resumable is None:
        resumable = JOB_KINDS[kind].resumable if kind in JOB_KINDS else False
    with Session(engine, expire_on_commit=False) as s:
        job = Job(kind=kind, params=params or {}, created_by=created_by, resumable=resumable)
        s.add(job)
        s.commit()
        s.refresh(job)
        return job


def get_job(engine: Engine, job_id: int) -> Job | None:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(Job, job_id)


def claim_next(engine: Engine, worker_id: str, kinds: list[str] | None = None) -> Job | None:
    """Atomically move the oldest queued job to running for this worker; None when the queue is empty."""
    now = utcnow()
    with write_engine(engine).begin() as conn:
        q = select(Job.id).where(Job.status == "queued")
        if kinds:
            q = q.where(Job.kind.in_(kinds))
        q = q.order_by(Job.id).limit(1)
        if conn.dialect.name == "postgresql":
            job_id = conn.execute(q.with_for_update(skip_locked=True)).scalar()
            if job_id is None:
                return None
        else:
            job_id = conn.execute(q).scalar()
            if job_id is None:
                return None
        res = conn.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")  # the conditional update is the lock on SQLite
            .values(status="running", worker_id=worker_id, started_at=now, heartbeat_at=now,
                    attempts=Job.attempts + 1, message="started")
        )
        if res.rowcount != 1:
            return None  # another worker won the race; the caller simply asks again
    return get_job(engine, job_id)


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


def job_status_counts(engine: Engine) -> dict[str, int]:
    from sqlalchemy import func

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
        import time

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
