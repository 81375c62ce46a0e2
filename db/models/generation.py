"""Generation runs, their traces, machine labels on traces, and versioned templates."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import BEHAVIORS, TRACE_STATUSES
from db.models.base import check_in, utcnow


class GenerationRun(SQLModel, table=True):
    """One generation over a selection of prompts: model, backend, strategy, templates and sampling params."""

    __tablename__ = "generation_run"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    model: str = Field(max_length=500)
    backend: str = Field(max_length=40)  # vllm | openai | transformers
    strategy: str = Field(default="single", max_length=40)  # a name in curation.generation.strategies
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    templates: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Live while running, final once done: samples / parsed / matches expected / usable per behaviour, rejection
    # reasons, tokens, tokens/s, elapsed and ETA.
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False,
                                                                           server_default="{}"))
    status: str = Field(default="queued", max_length=20)
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class Trace(SQLModel, table=True):
    """A model's reasoning + answer for one prompt. The model's text is never overwritten; edits live in
    annotations. `version` is the optimistic lock."""

    __table_args__ = (
        UniqueConstraint("run_id", "prompt_id", "sample_index", name="uq_trace_run_prompt_sample"),
        CheckConstraint(check_in("status", TRACE_STATUSES), name="ck_trace_status"),
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


class TemplateVersion(SQLModel, table=True):
    """One saved version of an editable template (self-check system prompts, mutation rewrites, judge rubrics).
    Versions are never edited in place: saving adds version + 1, and runs record the exact text they used."""

    __tablename__ = "template_version"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_template_version_name_version"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)  # e.g. self_check.refuse, mutation.slang
    version: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    note: str = Field(default="", max_length=500)
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)


class Demo(SQLModel, table=True):
    """A worked example (prompt → reasoning → reply) that few-shot strategies show the model. The library starts
    with a small shipped set and grows from reviewed traces promoted in Review."""

    __table_args__ = (UniqueConstraint("prompt_sha256", "behavior", name="uq_demo_prompt_behavior"),
                      CheckConstraint(check_in("behavior", BEHAVIORS), name="ck_demo_behavior"))
    id: Optional[int] = Field(default=None, primary_key=True)
    behavior: str = Field(max_length=10)
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    prompt_sha256: str = Field(max_length=64, index=True)  # never shown for this prompt, nor for an eval prompt
    reasoning: str = Field(sa_column=Column(Text, nullable=False))
    response: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(default="shipped", max_length=20)  # shipped | review
    trace_id: Optional[int] = Field(default=None, foreign_key="trace.id")
    is_active: bool = True
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
