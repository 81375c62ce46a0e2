"""Cancelling a job on a user's behalf: db.jobs.request_cancel is the primitive; this is the check that pages and
commands go through. Admins may cancel any job, anyone else only the jobs they queued."""
from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.errors import PermissionDenied
from curation.auth import actor, can
from db import jobs as jobrows
from db.models import Job, User


def cancel_job(engine: Engine, user: User | int | None, job_id: int) -> Job:
    """Request the cancel (a queued job ends at once, a running one at its next check); None is the local operator."""
    with Session(engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise ValueError(f"job {job_id} does not exist")
        if user is not None:
            me = actor(s, user)
            if not can(me.role, "view_jobs") and job.created_by != me.id:
                raise PermissionDenied(f"'{me.username}' ({me.role}) may cancel only the jobs they queued")
    jobrows.request_cancel(engine, job_id)
    return jobrows.get_job(engine, job_id)
