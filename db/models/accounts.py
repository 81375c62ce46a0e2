"""Projects and user accounts."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import ROLES
from db.models.base import check_in, utcnow


class Project(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint(check_in("role", ROLES), name="ck_app_user_role"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=20)
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
