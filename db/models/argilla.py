"""What was pushed to Argilla and what each pull did with each response."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from db.models.base import check_in, utcnow

# queue_id / annotation_id are plain integers (no foreign key) so this migration branch stays independent of
# review's (0003), like ExportItem.annotation_id.
ARGILLA_OUTCOMES = ("annotated", "skipped", "conflict", "invalid")


class ArgillaDataset(SQLModel, table=True):
    """A dataset we pushed to an Argilla workspace: what selection it came from and when it was synced."""

    __tablename__ = "argilla_dataset"
    __table_args__ = (UniqueConstraint("workspace", "name", name="uq_argilla_dataset_workspace_name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    workspace: str = Field(max_length=200)
    argilla_id: Optional[str] = Field(default=None, max_length=64)
    queue_id: Optional[int] = None
    queue_name: Optional[str] = Field(default=None, max_length=200)
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    overlap: int = 1
    record_count: int = 0
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    pushed_at: Optional[datetime] = None
    pulled_at: Optional[datetime] = None


class ArgillaRecord(SQLModel, table=True):
    """One trace inside a pushed dataset (the Argilla record id is `trace-<trace_id>`). `synced_version` is the
    trace version the Argilla annotators saw, moved forward only by our own pulls."""

    __tablename__ = "argilla_record"
    __table_args__ = (UniqueConstraint("dataset_id", "trace_id", name="uq_argilla_record_dataset_trace"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="argilla_dataset.id", index=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    pushed_version: int
    synced_version: int
    synced_at: datetime = Field(default_factory=utcnow)
    pushed_at: datetime = Field(default_factory=utcnow)
    conflict: Optional[str] = Field(default=None, sa_column=Column(Text))


class ArgillaResponse(SQLModel, table=True):
    """What one pull did with one Argilla user's response to one record; its existence makes pulls idempotent."""

    __tablename__ = "argilla_response"
    __table_args__ = (
        UniqueConstraint("dataset_id", "trace_id", "argilla_user_id", name="uq_argilla_response_record_user"),
        CheckConstraint(check_in("outcome", ARGILLA_OUTCOMES), name="ck_argilla_response_outcome"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="argilla_dataset.id", index=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    argilla_user_id: str = Field(max_length=64)
    argilla_username: str = Field(default="", max_length=100)
    user_id: Optional[int] = Field(default=None, foreign_key="app_user.id")
    status: str = Field(max_length=20)  # submitted | discarded
    outcome: str = Field(max_length=20)
    annotation_id: Optional[int] = None
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    pulled_at: datetime = Field(default_factory=utcnow)
