"""Accounts and permissions, in one place: password hashing, sign-in, the role table, and the check every service
runs on the acting user. The web menu and each page's guard are derived from the same table (app.web.navigation).

Checks run server-side, inside the function that performs the action, on the user row as it is in the database
now (a demoted or deactivated user loses rights at once, whatever their browser session says). A `user` of None
means the local operator: the CLI and the worker acting on their own, who hold the database anyway.
"""
from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import LoginThrottled, PermissionDenied
from core.vocabulary import ROLES, Role
from curation.sessions import revoke_user_sessions
from db.engine import write_engine
from db.models import AuditEvent, LoginAttempt, User, utcnow

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
ARGILLA_PREFIX = "argilla:"  # accounts made by an Argilla pull; ':' is not allowed in names people choose
# Sign-in throttling: FREE_FAILURES wrong passwords per user name (CLIENT_FREE_FAILURES per client address, which
# people behind one proxy share), then a wait that doubles.
FREE_FAILURES = 5
CLIENT_FREE_FAILURES = 20
BASE_DELAY_S = 30
MAX_DELAY_S = 15 * 60
THROTTLE_WINDOW = timedelta(hours=1)

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
    return {"id": u.id, "username": u.username, "role": u.role, "is_active": u.is_active,
            "argilla_username": u.argilla_username}


# -- accounts ---------------------------------------------------------------------------------------------------
MAX_USERNAME = 100  # the column's length: a longer name could be created nowhere and signed in with never
# Control, format (zero-width, bidi overrides), surrogate, private-use and unassigned characters, line separators:
# invisible or unstorable, they make one name look like another.
HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _hidden(name: str) -> Optional[str]:
    return next((c for c in name if unicodedata.category(c) in HIDDEN_CATEGORIES), None)


def user_name(raw: str) -> str:
    """A user name as it is stored and signed in with: NFKC-normalised (full-width and ligature forms fold to one
    spelling), ends stripped. ValueError says what is wrong with it."""
    name = unicodedata.normalize("NFKC", raw).strip()
    if not name:
        raise ValueError("the user name is empty")
    if len(name) > MAX_USERNAME:
        raise ValueError(f"the user name has {len(name)} characters; at most {MAX_USERNAME}")
    bad = _hidden(name)
    if bad is not None:
        what = unicodedata.name(bad, "an invisible or control character").lower()
        raise ValueError(f"the user name contains U+{ord(bad):04X} ({what}), which is not allowed")
    if ":" in name:
        raise ValueError(f"user name '{name}': ':' is reserved for accounts linked to Argilla")
    return name


def look_alike(name: str, existing: list[str]) -> Optional[str]:
    """An existing name that reads the same as `name` (case, Unicode confusables such as Cyrillic 'а' for 'a' or
    '0' for 'o', from Unicode's confusables list), or None."""
    import confusables

    return next((u for u in existing if u.casefold() == name.casefold() or confusables.is_confusable(u, name)),
                None)


def create_user(engine: Engine, username: str, password: str, role: str, *, only_if_none: bool = False) -> User:
    """A new account (no actor check: `add_user` and the first-run form decide who may call this). With
    `only_if_none`, only while no account exists at all. The name must not look like an existing one."""
    username = user_name(username)
    if role not in ROLES:
        raise ValueError(f"role '{role}' is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    password_hash = _hasher.hash(password)  # slow on purpose: do it before taking the write lock
    with Session(write_engine(engine), expire_on_commit=False) as s:
        if only_if_none:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("LOCK TABLE app_user IN SHARE ROW EXCLUSIVE MODE"))  # SQLite: the write lock
            if s.execute(select(func.count(User.id))).scalar_one():
                raise PermissionDenied("an account already exists; ask an admin to add yours")
        if s.execute(select(User.id).where(User.username == username)).first():
            raise ValueError(f"user '{username}' already exists")
        clash = look_alike(username, list(s.execute(select(User.username)).scalars()))
        if clash is not None:
            raise ValueError(f"user name '{username}' looks like the existing user '{clash}'; choose another")
        user = User(username=username, password_hash=password_hash, role=role)
        s.add(user)
        s.commit()
        return user


FORWARDED_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded")
UNTRUSTED_FORWARD = "forwarded (untrusted)"


def throttle_client(ip: Optional[str], headers: dict[str, str], *, trust_forwarded: bool) -> str:
    """The address a sign-in is throttled under. Streamlit reports a forwarded address as the client's, and anyone
    can send the header: unless a trusted proxy sets it, all forwarded requests share one key."""
    forwarded = any(h.lower() in FORWARDED_HEADERS for h in headers)
    if forwarded and not trust_forwarded:
        return UNTRUSTED_FORWARD
    return ip if isinstance(ip, str) and ip else "unknown"


def _retry_after(session: Session, column, value: str, now: datetime, free: int, *, success_resets: bool) -> int:
    """Seconds until `value` (a user name or a client) may try again: nothing for `free` failures within the
    window (for a name: since its last success), then a delay doubling with each further failure."""
    since = now - THROTTLE_WINDOW
    if success_resets:
        last_ok = session.execute(select(func.max(LoginAttempt.at)).where(column == value, LoginAttempt.ok)).scalar()
        if last_ok is not None and last_ok > since:
            since = last_ok
    n, last = session.execute(select(func.count(LoginAttempt.id), func.max(LoginAttempt.at))
                              .where(column == value, ~LoginAttempt.ok, LoginAttempt.at > since)).one()
    if n < free:
        return 0
    delay = min(BASE_DELAY_S * 2 ** (n - free), MAX_DELAY_S)
    return max(0, int(delay - (now - last).total_seconds() + 0.999))


def authenticate(engine: Engine, username: str, password: str, *, client: str = "local") -> Optional[User]:
    """The active user with this name and password, or None. The same work is done whatever the name (an unknown
    one is verified against a dummy hash). Every attempt is recorded, as a failure until the password checks out,
    in the same locked transaction that counts earlier failures: parallel guesses cannot all slip under the limit.
    After repeated failures for the name (a success resets it) or the client (it does not: one's own account must
    not reset a guesser's count), attempts are refused with `LoginThrottled`; failures go to the audit log."""
    name, client = sign_in_name(username), _storable(client or "unknown")[:100]
    now = utcnow()
    with Session(write_engine(engine), expire_on_commit=False) as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("LOCK TABLE login_attempt IN SHARE ROW EXCLUSIVE MODE"))  # SQLite: the write lock
        wait = max(_retry_after(s, LoginAttempt.username, name, now, FREE_FAILURES, success_resets=True),
                   _retry_after(s, LoginAttempt.client, client, now, CLIENT_FREE_FAILURES, success_resets=False))
        try:  # a name no account can have (too long, hidden characters) matches none, at the same cost
            user = s.execute(select(User).where(User.username == user_name(username))).scalars().first()
        except ValueError:
            user = None
        attempt = None
        if wait:  # checks no password, so it does not lengthen the wait
            _audit_failure(s, name, client, user, "login_throttled")
        else:
            attempt = LoginAttempt(username=name, client=client, ok=False, at=now)
            s.add(attempt)
        s.commit()
    if attempt is None:
        raise LoginThrottled(wait)
    try:
        _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
        ok = user is not None and user.is_active
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    with Session(write_engine(engine)) as s:
        if ok:
            s.execute(update(LoginAttempt).where(LoginAttempt.id == attempt.id).values(ok=True))
        else:
            _audit_failure(s, name, client, user, "login_failed")
        s.commit()
    return user if ok else None


def _storable(text: str) -> str:
    """Hidden characters (NUL, lone surrogates, ...) replaced by U+FFFD: what a database column can hold."""
    return "".join("\ufffd" if unicodedata.category(c) in HIDDEN_CATEGORIES else c for c in text)


def sign_in_name(raw: str) -> str:
    """The name a sign-in attempt is counted under: the user name's normal form, storable, at most the column's
    length (throttling needs a key even for a name no account can have)."""
    return _storable(unicodedata.normalize("NFKC", raw).strip())[:MAX_USERNAME]


def _audit_failure(s: Session, name: str, client: str, user: Optional[User], action: str) -> None:
    s.add(AuditEvent(actor_id=user.id if user else None, entity="login", entity_id=user.id if user else 0,
                     action=action, after={"username": name, "client": client}))


def change_password(engine: Engine, acting: User | int, user_id: int, new_password: str, *,
                    current_password: Optional[str] = None) -> None:
    """Users change their own password (giving the current one); admins reset anyone else's; None is the local
    operator (`rational users password`). Every session of the user ends, so a stolen cookie stops working."""
    if len(new_password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    new_hash = _hasher.hash(new_password)
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = actor(s, acting) if acting is not None else None
        target = s.get(User, user_id)
        if target is None:
            raise ValueError(f"user {user_id} does not exist")
        if me is not None and me.id == target.id:
            try:
                _hasher.verify(target.password_hash, current_password or "")
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                raise PermissionDenied("the current password is wrong") from None
        elif me is not None:
            require(s, me, "manage_users")
        target.password_hash = new_hash
        revoke_user_sessions(s, target.id)
        s.add(AuditEvent(actor_id=me.id if me else None, entity="user", entity_id=target.id,
                         action="password_change"))
        s.commit()


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
    """The first-run form: works only while no user exists at all. The check and the insert are one transaction
    under a lock, so simultaneous first-run forms create one admin, not several."""
    return create_user(engine, username, password, Role.ADMIN, only_if_none=True)


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
                is_active: bool | None = None, argilla_username: str | None = None) -> User:
    """Role, active flag, or the Argilla account whose responses count as this user's ("" unlinks)."""
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
            if not is_active:
                revoke_user_sessions(s, u.id)
        if argilla_username is not None:
            taken = s.execute(select(User.username).where(User.argilla_username == argilla_username,
                                                          User.id != u.id)).scalar()
            if argilla_username and taken:
                raise ValueError(f"Argilla user '{argilla_username}' is already linked to '{taken}'")
            u.argilla_username = argilla_username or None
        if u.id == admin.id and (u.role != Role.ADMIN or not u.is_active):
            raise ValueError("you cannot remove your own admin rights")
        s.add(AuditEvent(actor_id=admin.id, entity="user", entity_id=u.id, action="update", before=before,
                         after=user_dict(u)))
        s.commit()
        return u
