"""Versions of trained refusal judges: the fitted model and its card (what it learned from, how it measured)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from db.models.base import utcnow


class JudgeVersion(SQLModel, table=True):
    """One fit of a learned judge. The model is plain JSON (vocabularies and weights), never a pickle, so a
    database row can never run code."""

    __tablename__ = "judge_version"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_judge_version_name_version"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, index=True)
    version: int
    model: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # trained_on: rows from the shipped set and from reviewers' labels, per label; heldout: measured figures.
    card: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
