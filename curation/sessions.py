"""Signed sign-in tokens, so a page reload keeps the user signed in. Token: "<user id>.<expiry>.<hmac>";
the HMAC key is RATIONAL_SECRET_KEY or a random key kept in RATIONAL_HOME/session_secret (mode 0600).
The user row is re-read on every run, so a deactivated account is out at once whatever its token says."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from typing import Optional

from core.settings import get_settings

COOKIE = "rs_session"
TTL_S = 12 * 3600


def _key() -> bytes:
    settings = get_settings()
    if settings.rational_secret_key:
        return settings.rational_secret_key.encode()
    path = settings.home() / "session_secret"
    if not path.exists():
        tmp = path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        if not path.exists():
            os.replace(tmp, path)
    return path.read_text().strip().encode()


def _sign(payload: str) -> str:
    return hmac.new(_key(), payload.encode(), hashlib.sha256).hexdigest()


def issue_token(user_id: int, ttl_s: int = TTL_S) -> str:
    payload = f"{int(user_id)}.{int(time.time()) + ttl_s}"
    return f"{payload}.{_sign(payload)}"


def read_token(token: Optional[str]) -> Optional[int]:
    """The user id in a valid, unexpired token; None otherwise."""
    if not token or token.count(".") != 2:
        return None
    uid, exp, sig = token.split(".")
    if not (uid.isdigit() and exp.isdigit()) or not hmac.compare_digest(sig, _sign(f"{uid}.{exp}")):
        return None
    if int(exp) < time.time():
        return None
    return int(uid)
