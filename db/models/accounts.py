"""Projects and user accounts."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import CheckConstraint, Index
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
    # The Argilla account whose responses are this user's, linked by an admin; never inferred from the name.
    argilla_username: Optional[str] = Field(default=None, max_length=100, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class UserSession(SQLModel, table=True):
    """A sign-in, kept on the server so it can end: the cookie holds a random token, this row its sha256. Signing
    out, deactivation and a password change revoke it."""

    __tablename__ = "user_session"
    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    token_sha256: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: Optional[datetime] = None


class LoginAttempt(SQLModel, table=True):
    """One sign-in attempt, right or wrong: what throttling counts, per user name and per client."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_username_at", "username", "at"),
                      Index("ix_login_attempt_client_at", "client", "at"))
    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(max_length=100)
    client: str = Field(max_length=100)
    ok: bool
    at: datetime = Field(default_factory=utcnow)
