"""Prompt sets, prompts and the record of each import."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import BEHAVIORS, SPLITS
from db.models.base import check_in, utcnow


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
        CheckConstraint(check_in("expected_behavior", BEHAVIORS), name="ck_prompt_behavior"),
        CheckConstraint(check_in("split", SPLITS), name="ck_prompt_split"),
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


# An import still writing its rows in chunks: they exist but are hidden from every query (db.visibility).
IMPORT_STAGING = "staging"


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
    status: str = Field(default="running", max_length=20)  # running | staging | succeeded | failed
    rows_read: int = 0
    inserted: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None
