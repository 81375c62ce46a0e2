"""Queries beside the models: users, prompt listing and counts. Pages and the CLI call these, never raw SQL."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db.engine import write_engine
from db.models import ROLES, Job, Prompt, PromptImport, PromptSet, User

_hasher = PasswordHasher()


# -- users ----------------------------------------------------------------------------------------------------
def create_user(engine: Engine, username: str, password: str, role: str) -> User:
    username = username.strip()
    if not username:
        raise ValueError("the user name is empty")
    if role not in ROLES:
        raise ValueError(f"role '{role}' is not one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("the password must have at least 8 characters")
    password_hash = _hasher.hash(password)  # slow on purpose: do it before taking the write lock
    with Session(write_engine(engine), expire_on_commit=False) as s:
        if s.execute(select(User.id).where(User.username == username)).first():
            raise ValueError(f"user '{username}' already exists")
        user = User(username=username, password_hash=password_hash, role=role)
        s.add(user)
        s.commit()
        return user


def authenticate(engine: Engine, username: str, password: str) -> Optional[User]:
    with Session(engine, expire_on_commit=False) as s:
        user = s.execute(select(User).where(User.username == username.strip())).scalars().first()
        if user is None or not user.is_active:
            return None
        try:
            _hasher.verify(user.password_hash, password)
        except (VerifyMismatchError, InvalidHashError):
            return None
        return user


def count_users(engine: Engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count(User.id))).scalar_one()


def list_users(engine: Engine) -> list[User]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(User).order_by(User.username)).scalars())


# -- prompts --------------------------------------------------------------------------------------------------
@dataclass
class PromptFilter:
    set_names: Optional[list[str]] = None
    behaviors: Optional[list[str]] = None
    splits: Optional[list[str]] = None
    search: Optional[str] = None
    project_id: int = 1

    def apply(self, q):
        q = q.where(Prompt.project_id == self.project_id)
        if self.set_names:
            q = q.where(Prompt.set_id.in_(select(PromptSet.id).where(PromptSet.name.in_(self.set_names))))
        if self.behaviors:
            q = q.where(Prompt.expected_behavior.in_(self.behaviors))
        if self.splits:
            q = q.where(Prompt.split.in_(self.splits))
        if self.search:
            # Escape LIKE wildcards so the search is literal text.
            pattern = "%" + self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            q = q.where(or_(Prompt.text.ilike(pattern, escape="\\"), Prompt.source_id.ilike(pattern, escape="\\")))
        return q


def count_prompts(engine: Engine, flt: PromptFilter | None = None) -> int:
    flt = flt or PromptFilter()
    with Session(engine) as s:
        return s.execute(flt.apply(select(func.count(Prompt.id)))).scalar_one()


def list_prompts(engine: Engine, flt: PromptFilter | None = None, *, limit: int = 50, offset: int = 0
                 ) -> list[dict[str, Any]]:
    """One page of prompts, newest sets last, as plain dicts (the table never loads whole)."""
    flt = flt or PromptFilter()
    q = flt.apply(select(Prompt.id, PromptSet.name.label("set"), Prompt.text, Prompt.expected_behavior,
                         Prompt.split, Prompt.category, Prompt.source_id, Prompt.mutation)
                  .join(PromptSet, PromptSet.id == Prompt.set_id))
    q = q.order_by(Prompt.id).limit(limit).offset(offset)
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def prompt_counts(engine: Engine, project_id: int = 1) -> list[dict[str, Any]]:
    """Counts by set, expected behaviour and split."""
    q = (select(PromptSet.name.label("set"), Prompt.expected_behavior, Prompt.split, func.count(Prompt.id).label("n"))
         .join(PromptSet, PromptSet.id == Prompt.set_id).where(Prompt.project_id == project_id)
         .group_by(PromptSet.name, Prompt.expected_behavior, Prompt.split)
         .order_by(PromptSet.name, Prompt.expected_behavior, Prompt.split))
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def list_sets(engine: Engine, project_id: int = 1) -> list[dict[str, Any]]:
    q = (select(PromptSet.id, PromptSet.name, PromptSet.kind, PromptSet.license, PromptSet.source,
                PromptSet.description, func.count(Prompt.id).label("prompts"))
         .outerjoin(Prompt, Prompt.set_id == PromptSet.id).where(PromptSet.project_id == project_id)
         .group_by(PromptSet.id).order_by(PromptSet.name))
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def recent_imports(engine: Engine, limit: int = 20) -> list[PromptImport]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(PromptImport).order_by(PromptImport.id.desc()).limit(limit)).scalars())


def list_jobs(engine: Engine, limit: int = 50, kinds: list[str] | None = None) -> list[Job]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if kinds:
        q = q.where(Job.kind.in_(kinds))
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(q).scalars())
