"""Background jobs: what the worker runs, with progress, logs and liveness."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text
from sqlmodel import Field, SQLModel

from core.vocabulary import JOB_STATUSES
from db.models.base import check_in, utcnow


class Job(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint(check_in("status", JOB_STATUSES), name="ck_job_status"),
        Index("ix_job_status_id", "status", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40, index=True)
    status: str = Field(default="queued", max_length=20)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    progress_done: int = 0
    progress_total: Optional[int] = None
    message: str = Field(default="", max_length=500)
    log_tail: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    result: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    resumable: bool = False
    attempts: int = 0
    cancel_requested: bool = False
    # Only a worker started with this label claims the job (e.g. "gpu"); None: any worker that runs the kind.
    requires_label: Optional[str] = Field(default=None, max_length=40)
    worker_id: Optional[str] = Field(default=None, max_length=200)
    heartbeat_at: Optional[datetime] = None
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
