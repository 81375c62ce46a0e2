"""The review workflow: annotations, queues and their items, claims, the audit log and per-user settings."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import DECISIONS
from db.models.base import check_in, utcnow

ANNOTATION_SOURCES = ("ui", "argilla")


class Annotation(SQLModel, table=True):
    """One person's judgement of one trace. Edits live here; the trace's model text is never overwritten."""

    __table_args__ = (
        UniqueConstraint("trace_id", "annotator_id", name="uq_annotation_trace_annotator"),
        CheckConstraint(check_in("decision", DECISIONS), name="ck_annotation_decision"),
        CheckConstraint(check_in("source", ANNOTATION_SOURCES), name="ck_annotation_source"),
        CheckConstraint("quality IS NULL OR (quality BETWEEN 1 AND 5)", name="ck_annotation_quality"),
        Index("ix_annotation_annotator_created", "annotator_id", "created_at"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    annotator_id: int = Field(foreign_key="app_user.id")
    queue_id: Optional[int] = Field(default=None, foreign_key="review_queue.id", index=True)
    decision: str = Field(max_length=20)
    behavior_label: Optional[str] = Field(default=None, max_length=10)  # refuse | comply | partial
    reasoning_sound: Optional[bool] = None
    harm_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    quality: Optional[int] = None
    edited_reasoning: Optional[str] = Field(default=None, sa_column=Column(Text))
    edited_response: Optional[str] = Field(default=None, sa_column=Column(Text))
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    seconds_spent: Optional[float] = None
    source: str = Field(default="ui", max_length=10)
    trace_version: int = 1  # the trace version the annotator saw
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Queue(SQLModel, table=True):
    """A work list: a filter over traces, materialised into queue items, worked by members with overlap N."""

    __tablename__ = "review_queue"
    __table_args__ = (CheckConstraint("overlap >= 1", name="ck_review_queue_overlap"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    overlap: int = 1
    lease_seconds: int = 600
    is_active: bool = True
    version: int = 1
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)


class QueueMember(SQLModel, table=True):
    __tablename__ = "queue_member"
    queue_id: int = Field(foreign_key="review_queue.id", primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", primary_key=True, index=True)
    added_at: datetime = Field(default_factory=utcnow)


class QueueItem(SQLModel, table=True):
    """A trace in a queue, with its priority (0 = auto-labels disagree or are inconsistent, 1 = the rest).
    `is_open` mirrors whether the trace still takes annotations, so claiming skips finished work by index."""

    __tablename__ = "queue_item"
    __table_args__ = (Index("ix_queue_item_claim", "queue_id", "is_open", "priority", "trace_id"),)
    queue_id: int = Field(foreign_key="review_queue.id", primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", primary_key=True, index=True)
    priority: int = 1
    is_open: bool = True
    added_at: datetime = Field(default_factory=utcnow)


class Claim(SQLModel, table=True):
    """A lease on a trace for one user. kind 'active' counts against the overlap until it expires;
    kind 'skip' only keeps the trace away from that user until it expires."""

    __table_args__ = (
        UniqueConstraint("trace_id", "user_id", name="uq_claim_trace_user"),
        Index("ix_claim_trace_kind_expires", "trace_id", "kind", "expires_at"),
        Index("ix_claim_user_kind", "user_id", "kind"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id")
    user_id: int = Field(foreign_key="app_user.id")
    queue_id: int = Field(foreign_key="review_queue.id", index=True)
    kind: str = Field(default="active", max_length=10)
    claimed_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class AuditEvent(SQLModel, table=True):
    """Who changed what: written in the same transaction as every change to a trace, annotation, queue or user."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity", "entity_id", "id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    actor_id: Optional[int] = Field(default=None, foreign_key="app_user.id", index=True)
    entity: str = Field(max_length=40)
    entity_id: int
    action: str = Field(max_length=40)
    before: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    after: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    at: datetime = Field(default_factory=utcnow, index=True)


class UserSetting(SQLModel, table=True):
    """Per-user preferences: harm categories whose text stays hidden behind a content warning until clicked."""

    __tablename__ = "user_setting"
    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    blur_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = 1
    updated_at: datetime = Field(default_factory=utcnow)
