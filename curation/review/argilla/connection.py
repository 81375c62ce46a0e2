"""The connection to an Argilla server: its settings (environment, or the page's saved file), the SDK client and
a status check. Messages never contain the API key."""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sqlalchemy.engine import Engine

from core.settings import get_settings
from curation.auth import check
from db.engine import rational_home
from db.models import User


class ArgillaError(Exception):
    """Argilla is not configured, unreachable, or refused a request. Messages never contain the API key."""


@dataclass(frozen=True)
class ArgillaConnection:
    url: str
    api_key: str = field(repr=False)
    workspace: str = "rational"

    def describe(self) -> str:
        return f"{self.url} (workspace '{self.workspace}', key {'set' if self.api_key else 'missing'})"


def _settings_path() -> Path:
    return rational_home() / "argilla.json"


def connection_settings() -> Optional[ArgillaConnection]:
    """ARGILLA_API_URL / ARGILLA_API_KEY / ARGILLA_WORKSPACE override what the settings page saved."""
    env = get_settings()
    saved: dict[str, Any] = {}
    path = _settings_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ArgillaError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    url = env.argilla_api_url or saved.get("url") or ""
    key = env.argilla_api_key or saved.get("api_key") or ""
    workspace = env.argilla_workspace or saved.get("workspace") or "rational"
    if not url or not key:
        return None
    return ArgillaConnection(url.rstrip("/"), key, workspace)


def save_connection_settings(engine: Engine, user: User | int | None, url: str, api_key: str,
                             workspace: str = "rational") -> None:
    """Admins only (the key acts for everyone's pushes and pulls). Written atomically, readable by the owner only
    (it holds an API key)."""
    check(engine, user, "manage_queues")
    if not re.match(r"^https?://", url.strip()):
        raise ValueError(f"field 'url': '{url}' must start with http:// or https://")
    if not api_key.strip():
        raise ValueError("field 'api_key' is empty")
    path = _settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"url": url.strip().rstrip("/"), "api_key": api_key.strip(),
                   "workspace": workspace.strip() or "rational"}, f)
    os.replace(tmp, path)


def require_conn(conn: Optional[ArgillaConnection]) -> ArgillaConnection:
    conn = conn or connection_settings()
    if conn is None:
        raise ArgillaError("Argilla is not configured: set ARGILLA_API_URL and ARGILLA_API_KEY (or save them on "
                           "the Argilla page)")
    return conn


def scrub(conn: ArgillaConnection, text: str) -> str:
    for secret in (conn.api_key, get_settings().argilla_hf_token):
        text = text.replace(secret, "***") if secret else text
    return text


def failure_line(conn: ArgillaConnection, e: Exception) -> str:
    """One line a person can act on for a failed call to the server (never a traceback, never the key)."""
    text = f"{type(e).__name__}: {e}"
    low = text.lower()
    if "connect" in low and ("refused" in low or "errno" in low or "connecterror" in low):
        why = "the server does not answer (connection refused): is it running at this URL?"
    elif "timeout" in low or "timed out" in low:
        why = "the server did not answer in time"
    elif "401" in low or "unauthorized" in low or "403" in low:
        why = "the server refused the API key"
    elif "name or service not known" in low or "nodename nor servname" in low or "getaddrinfo" in low:
        why = "the host name does not resolve"
    else:
        why = text.splitlines()[0] if text.strip() else type(e).__name__
    return scrub(conn, why)[:300]


def client(conn: ArgillaConnection, retries: int = 3):
    import argilla as rg

    # A private Hugging Face Space sits behind the Hub's auth: its token goes in a header beside the API key.
    hf_token = get_settings().argilla_hf_token
    extra = {"headers": {"Authorization": f"Bearer {hf_token}"}} if hf_token else {}
    return rg.Argilla(api_url=conn.url, api_key=conn.api_key, timeout=60, retries=retries, **extra)


def find(lookup, **kw):
    """The SDK warns when a name is not found; not finding it is an expected answer here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lookup(**kw)


def status(conn: Optional[ArgillaConnection] = None) -> dict[str, Any]:
    """Whether the server answers with these credentials, and as whom."""
    conn = conn or connection_settings()
    if conn is None:
        return {"configured": False, "ok": False, "error": "not configured"}
    out: dict[str, Any] = {"configured": True, "url": conn.url, "workspace": conn.workspace, "ok": False}
    try:
        me = client(conn, retries=0).me
        out.update(ok=True, username=me.username, role=str(getattr(me.role, "value", me.role)))
    except Exception as e:  # any failure is a status to show, never a crash of the page
        out["error"] = failure_line(conn, e)
    return out


