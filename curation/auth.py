"""Accounts and permissions, in one place: password hashing, sign-in, the role table, and the check every service
runs on the acting user. The web menu and each page's guard are derived from the same table (app.web.navigation).

Checks run server-side, inside the function that performs the action, on the user row as it is in the database
now (a demoted or deactivated user loses rights at once, whatever their browser session says). A `user` of None
means the local operator: the CLI and the worker acting on their own, who hold the database anyway.
"""
from __future__ import annotations

from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import PermissionDenied
from core.vocabulary import ROLES, Role
from db.engine import write_engine
from db.models import AuditEvent, User

EVERYONE = frozenset(ROLES)
STAFF = frozenset({Role.REVIEWER, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})

# action -> roles allowed. Queue membership is checked separately for annotate (admins work any queue).
PERMISSIONS: dict[str, frozenset[str]] = {
    "home": EVERYONE,
    "annotate": EVERYONE,
    "own_settings": EVERYONE,
    "adjudicate": STAFF,
    "browse": STAFF,
    "agreement": STAFF,
    "generate": STAFF,  # generation, mutation and auto-label jobs
    "train": STAFF,  # exports, training runs and the RATIONAL loop
    "evaluate": STAFF,
    "vote": EVERYONE,  # the Compare page and its blind A/B votes
    "label_outputs": STAFF,  # human verdicts on eval outputs
    "curate_demos": STAFF,  # the demo library generation draws worked examples from
    "train_judges": STAFF,  # refit the learned refusal judge on reviewers' labels
    "manage_prompts": ADMINS,  # imports and built-in sets
    "view_jobs": ADMINS,
    "manage_queues": ADMINS,
    "manage_users": ADMINS,
    "bulk": ADMINS,
    "view_activity": ADMINS,
}
MIN_PASSWORD = 8

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


def can(role: str, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action '{action}'")
    return role in PERMISSIONS[action]


def actor(session: Session, user: User | int) -> User:
    """The acting user, re-read from the database (never trust the caller's copy of the role)."""
    uid = user if isinstance(user, int) else user.id
    row = session.get(User, uid)
    if row is None or not row.is_active:
        raise PermissionDenied(f"user {uid} does not exist or is deactivated")
    return row


def require(session: Session, user: User | int, action: str) -> User:
    row = actor(session, user)
    if not can(row.role, action):
        raise PermissionDenied(f"'{row.username}' ({row.role}) may not {action.replace('_', ' ')}")
    return row


def check(engine: Engine, user: User | int | None, action: str) -> Optional[User]:
    """`require` in its own session; None (the local operator) may do everything."""
    if user is None:
        return None
    with Session(engine, expire_on_commit=False) as s:
        return require(s, user, action)


def user_dict(u: User) -> dict:
    return {"id": u.id, "username": u.username, "role": u.role, "is_active": u.is_active}


# -- accounts ---------------------------------------------------------------------------------------------------
def create_user(engine: Engine, username: str, password: str, role: str) -> User:
    """A new account (no actor check: `add_user` and the first-run form decide who may call this)."""
    username = username.strip()
    if not username:
        raise ValueError("the user name is empty")
    if role not in ROLES:
        raise ValueError(f"role '{role}' is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    password_hash = _hasher.hash(password)  # slow on purpose: do it before taking the write lock
    with Session(write_engine(engine), expire_on_commit=False) as s:
        if s.execute(select(User.id).where(User.username == username)).first():
            raise ValueError(f"user '{username}' already exists")
        user = User(username=username, password_hash=password_hash, role=role)
        s.add(user)
        s.commit()
        return user


def authenticate(engine: Engine, username: str, password: str) -> Optional[User]:
    """The active user with this name and password, or None; the same work is done whatever the name."""
    with Session(engine, expire_on_commit=False) as s:
        user = s.execute(select(User).where(User.username == username.strip())).scalars().first()
    try:
        _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user if user is not None and user.is_active else None


def count_users(engine: Engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count(User.id))).scalar_one()


def list_users(engine: Engine) -> list[User]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(User).order_by(User.username)).scalars())


def find_user(engine: Engine, username: str) -> Optional[User]:
    with Session(engine, expire_on_commit=False) as s:
        return s.execute(select(User).where(User.username == username)).scalars().first()


def create_first_admin(engine: Engine, username: str, password: str) -> User:
    """The first-run form: works only while no user exists at all."""
    if count_users(engine):
        raise PermissionDenied("an account already exists; ask an admin to add yours")
    return create_user(engine, username, password, Role.ADMIN)


def add_user(engine: Engine, acting: User | int, username: str, password: str, role: str) -> User:
    with Session(engine) as s:
        admin = require(s, acting, "manage_users")
    user = create_user(engine, username, password, role)
    with Session(engine) as s:
        s.add(AuditEvent(actor_id=admin.id, entity="user", entity_id=user.id, action="create",
                         after=user_dict(user)))
        s.commit()
    return user


def update_user(engine: Engine, acting: User | int, user_id: int, *, role: str | None = None,
                is_active: bool | None = None) -> User:
    if role is not None and role not in ROLES:
        raise ValueError(f"role '{role}' is not one of {', '.join(ROLES)}")
    with Session(engine, expire_on_commit=False) as s:
        admin = require(s, acting, "manage_users")
        u = s.get(User, user_id)
        if u is None:
            raise ValueError(f"user {user_id} does not exist")
        before = user_dict(u)
        if role is not None:
            u.role = role
        if is_active is not None:
            u.is_active = is_active
        if u.id == admin.id and (u.role != Role.ADMIN or not u.is_active):
            raise ValueError("you cannot remove your own admin rights")
        s.add(AuditEvent(actor_id=admin.id, entity="user", entity_id=u.id, action="update", before=before,
                         after=user_dict(u)))
        s.commit()
        return u
