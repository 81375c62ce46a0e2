"""What every view shares: the cached engine, the signed-in user's id, and where uploads are kept."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import streamlit as st
from sqlalchemy.engine import Engine

from db.engine import database_url, get_engine, rational_home
from db.migrate import ensure_schema


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    # Keyed by URL so a changed DATABASE_URL (tests, a restarted server) never reuses another database's engine.
    eng = get_engine(url)
    ensure_schema(eng)
    return eng


def engine() -> Engine:
    """The migrated engine for the current DATABASE_URL (SQLite under RATIONAL_HOME by default)."""
    return _engine_for(database_url())



_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def upload_dir() -> Path:
    return rational_home() / "uploads"


def save_upload(filename: str, data: bytes) -> Path:
    """Store uploaded bytes under RATIONAL_HOME/uploads/<uuid>/<name>; written to a temp file, then renamed."""
    name = _UNSAFE_NAME.sub("_", Path(filename).name).strip("._") or "upload"
    folder = upload_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=False)
    final = folder / name
    tmp = folder / f".{name}.part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final
