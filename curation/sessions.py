"""Sign-in sessions kept on the server, so that they can end. The cookie holds a random token; the database holds
only its sha256, when it expires, and whether it was revoked. Signing out revokes the session; deactivating a user
or changing their password revokes all of theirs. The user row is re-read on every page run as well, so a
deactivated account is out at once whatever its cookie says."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db.engine import write_engine
from db.models import User, UserSession, utcnow

COOKIE = "rs_session"
TTL_S = 12 * 3600


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(engine: Engine, user_id: int, ttl_s: int = TTL_S) -> str:
    """A new session for this user; returns the token for the cookie (shown once, stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    with Session(write_engine(engine)) as s:
        s.add(UserSession(user_id=user_id, token_sha256=_digest(token),
                          expires_at=utcnow() + timedelta(seconds=ttl_s)))
        s.commit()
    return token


def session_user(engine: Engine, token: Optional[str]) -> Optional[int]:
    """The user id of a live session (known, unexpired, not revoked, active user); None otherwise."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    with Session(engine) as s:
        row = s.execute(select(UserSession.user_id, UserSession.expires_at, UserSession.revoked_at, User.is_active)
                     .join(User, User.id == UserSession.user_id)
                     .where(UserSession.token_sha256 == _digest(token))).first()
    if row is None:
        return None
    uid, expires_at, revoked_at, active = row
    if revoked_at is not None or not active or expires_at <= utcnow():
        return None
    return uid


def end_session(engine: Engine, token: Optional[str]) -> None:
    """Sign-out: the token stops working everywhere, including a copy taken before."""
    if not isinstance(token, str) or not token:
        return
    with Session(write_engine(engine)) as s:
        s.execute(update(UserSession).where(UserSession.token_sha256 == _digest(token),
                                         UserSession.revoked_at.is_(None)).values(revoked_at=utcnow()))
        s.commit()


def revoke_user_sessions(session: Session, user_id: int) -> int:
    """Inside the caller's transaction (deactivation, password change): every live session of the user ends."""
    res = session.execute(update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))
    return res.rowcount or 0
