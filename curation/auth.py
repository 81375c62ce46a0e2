"""Roles and permissions: the one place every review action asks "may this user do this?".

Checks run server-side, inside the function that performs the action, on the user row as it is in the
database now (a demoted or deactivated user loses rights at once, whatever their browser session says).
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db.crud import create_user
from db.models import ROLES, AuditEvent, User

ANNOTATOR, REVIEWER, ADMIN = "annotator", "reviewer", "admin"
EVERYONE = frozenset(ROLES)
STAFF = frozenset({REVIEWER, ADMIN})

# action -> roles allowed. Queue membership is checked separately for annotate (admins work any queue).
PERMISSIONS: dict[str, frozenset[str]] = {
    "annotate": EVERYONE,
    "own_settings": EVERYONE,
    "adjudicate": STAFF,
    "browse": STAFF,
    "agreement": STAFF,
    "manage_queues": frozenset({ADMIN}),
    "manage_users": frozenset({ADMIN}),
    "bulk": frozenset({ADMIN}),
    "view_activity": frozenset({ADMIN}),
}


class PermissionDenied(Exception):
    """The acting user's role (or membership) does not allow the action."""


class AuthError(Exception):
    """Bad credentials or an inactive account."""


def can(role: str, action: str) -> bool:
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
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action '{action}'")
    if row.role not in PERMISSIONS[action]:
        raise PermissionDenied(f"'{row.username}' ({row.role}) may not {action.replace('_', ' ')}")
    return row


def user_dict(u: User) -> dict:
    return {"id": u.id, "username": u.username, "role": u.role, "is_active": u.is_active}


# -- account administration ---------------------------------------------------------------------------------
def create_first_admin(engine: Engine, username: str, password: str) -> User:
    """The first-run form: works only while no user exists at all."""
    with Session(engine) as s:
        if s.execute(select(func.count(User.id))).scalar_one():
            raise PermissionDenied("an account already exists; ask an admin to add yours")
    return create_user(engine, username, password, ADMIN)


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
        if u.id == admin.id and (u.role != ADMIN or not u.is_active):
            raise ValueError("you cannot remove your own admin rights")
        s.add(AuditEvent(actor_id=admin.id, entity="user", entity_id=u.id, action="update", before=before,
                         after=user_dict(u)))
        s.commit()
        return u
