"""Table models. Later issues add tables through new Alembic migrations."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

BEHAVIORS = ("refuse", "comply", "partial")
SPLITS = ("train", "eval")
ROLES = ("admin", "reviewer", "annotator")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in values)})"


class Project(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="ck_app_user_role"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=20)
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class PromptSet(SQLModel, table=True):
    __tablename__ = "prompt_set"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_prompt_set_project_name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(default="prompts", max_length=40)  # prompts | jailbreak_templates
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    source: str = Field(default="", max_length=500)
    license: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class Prompt(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_prompt_project_sha256"),
        CheckConstraint(_in("expected_behavior", BEHAVIORS), name="ck_prompt_behavior"),
        CheckConstraint(_in("split", SPLITS), name="ck_prompt_split"),
        Index("ix_prompt_set_behavior_split", "set_id", "expected_behavior", "split"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id")
    set_id: int = Field(foreign_key="prompt_set.id", index=True)
    import_id: Optional[int] = Field(default=None, foreign_key="prompt_import.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    sha256: str = Field(max_length=64)
    source_id: Optional[str] = Field(default=None, max_length=200)
    category: Optional[str] = Field(default=None, max_length=200, index=True)
    expected_behavior: str = Field(max_length=10)
    split: str = Field(default="train", max_length=10)
    mutation: Optional[str] = Field(default=None, max_length=100, index=True)
    parent_prompt_id: Optional[int] = Field(default=None, foreign_key="prompt.id", index=True)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class PromptImport(SQLModel, table=True):
    """One import of one file into one set: its mapping, counts and error report."""

    __tablename__ = "prompt_import"
    id: Optional[int] = Field(default=None, primary_key=True)
    # Null when an all-or-nothing import failed before its set existed; set_name still says where it was going.
    set_id: Optional[int] = Field(default=None, foreign_key="prompt_set.id", index=True)
    set_name: str = Field(max_length=200)
    source_path: str = Field(max_length=1000)
    file_format: str = Field(max_length=20)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="running", max_length=20)  # running | succeeded | failed
    rows_read: int = 0
    inserted: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class Job(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="ck_job_status"),
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
    worker_id: Optional[str] = Field(default=None, max_length=200)
    heartbeat_at: Optional[datetime] = None
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


TRACE_STATUSES = ("pending", "in_review", "needs_adjudication", "approved", "rejected")


class GenerationRun(SQLModel, table=True):
    """One generation over a selection of prompts: model, backend, strategy, templates and sampling params."""

    __tablename__ = "generation_run"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    model: str = Field(max_length=500)
    backend: str = Field(max_length=40)  # vllm | openai | transformers
    strategy: str = Field(default="single", max_length=40)  # single | prefill | two_pass
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    templates: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", max_length=20)
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class Trace(SQLModel, table=True):
    """A model's reasoning + answer for one prompt. The model's text is never overwritten; edits live in
    annotations. `version` is the optimistic lock."""

    __table_args__ = (
        UniqueConstraint("run_id", "prompt_id", "sample_index", name="uq_trace_run_prompt_sample"),
        CheckConstraint(_in("status", TRACE_STATUSES), name="ck_trace_status"),
        Index("ix_trace_status_id", "status", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    run_id: Optional[int] = Field(default=None, foreign_key="generation_run.id", index=True)
    sample_index: int = 0
    reasoning: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    response: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    raw: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    parse_ok: bool = False
    strategy: str = Field(default="single", max_length=40)
    model: str = Field(default="", max_length=500)
    backend: str = Field(default="", max_length=40)
    template_version: Optional[str] = Field(default=None, max_length=100)
    sampling: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    gen_seconds: Optional[float] = None
    status: str = Field(default="pending", max_length=30)
    decided_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    decided_how: Optional[str] = Field(default=None, max_length=40)  # consensus | adjudication | bulk | auto
    decided_at: Optional[datetime] = None
    version: int = 1
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class AutoLabel(SQLModel, table=True):
    """A machine suggestion on a trace (refusal judge, decision, consistency, format, LLM judge). Never final."""

    __tablename__ = "auto_label"
    __table_args__ = (UniqueConstraint("trace_id", "kind", "agent", name="uq_auto_label_trace_kind_agent"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    kind: str = Field(max_length=40)  # refusal | decision | consistency | format | judge | matches_expected
    agent: str = Field(max_length=100)  # e.g. strmatch-gcg, strmatch-xstest, llm:<model>
    label: Optional[str] = Field(default=None, max_length=100)
    score: Optional[float] = None
    rationale: Optional[str] = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
