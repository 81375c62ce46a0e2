"""What every view shares: the cached engine, the signed-in user's id, and where uploads are kept."""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import streamlit as st
from sqlalchemy.engine import Engine

from curation.prompts.jobs import upload_area
from db.engine import database_url, get_engine
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
MAX_NAME = 120  # well under the 255 bytes most file systems allow, and still readable in the job list


def upload_dir() -> Path:
    return upload_area()


def upload_name(filename: str) -> str:
    """A safe file name for an upload: ASCII, no path, at most MAX_NAME characters, its extension kept."""
    name = _UNSAFE_NAME.sub("_", Path(filename).name).strip("._") or "upload"
    if len(name) > MAX_NAME:
        suffix = Path(name).suffix[:16]
        name = name[:MAX_NAME - len(suffix)].rstrip("._") + suffix
    return name


def save_upload(filename: str, data: bytes) -> Path:
    """Store uploaded bytes under the artifact root's uploads/<uuid>/<name>; written to a temp file, then renamed.
    A failed write leaves no folder behind."""
    name = upload_name(filename)
    folder = upload_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=False)
    final = folder / name
    tmp = folder / f".{name}.part"
    try:
        with open(tmp, "xb") as f:  # x: never through a link or over a file someone put there
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return final
