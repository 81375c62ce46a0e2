"""What every page shares: the cached engine, the signed-in user, and where uploads are kept.

Pages import from here instead of building engines themselves, so the login/role work has one place to hook in.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Optional

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
    _leave_pages_folder_mode()
    return _engine_for(database_url())


def _leave_pages_folder_mode() -> None:
    """Route a page reached in Streamlit's legacy pages-folder mode back through st.navigation.

    Because app/pages/ sits next to the main script, a fresh server runs a page file directly (bypassing
    streamlit_app.py, its sections and page config) until some session has run st.navigation once. Every page
    asks for the engine, so this is the one place that can notice it and rerun through the main script.
    AppTest resets the mode on every run (a rerun there would drop the run's widget events), so it is left alone.
    """
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()


def current_user_id() -> Optional[int]:
    """The signed-in user's id, or None before login exists / when nobody is signed in."""
    return st.session_state.get("user_id")


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
