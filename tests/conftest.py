"""Shared fixtures: real SQLite files and a real PostgreSQL server (one fresh database per test).

PostgreSQL: RATIONAL_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test). Where no server
answers, PostgreSQL tests skip with the reason, except under CI=true, where they fail: CI must run them.
"""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db.engine import make_engine
from db.migrate import upgrade

# Fixtures of later areas (tiny model, servers) live in their own modules.
pytest_plugins = ["tests.fixtures_ml"]

PG_URL = os.environ.get("RATIONAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_state: dict = {}


def _pg_admin():
    if "admin" not in _pg_state:
        try:
            eng = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(text("SELECT 1"))
            _pg_state["admin"] = eng
        except Exception as e:  # no server here
            _pg_state["admin"] = None
            _pg_state["why"] = f"PostgreSQL not reachable at {PG_URL}: {type(e).__name__}: {e}"
    return _pg_state["admin"]


def _require_pg():
    if _pg_admin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(_pg_state["why"] + " (CI must run the PostgreSQL tests)")
        pytest.skip(_pg_state["why"])


@pytest.fixture(scope="session")
def pg_template():
    """A migrated template database; tests clone it, which is much faster than migrating each time."""
    _require_pg()
    admin = _pg_admin()
    name = f"rs_tmpl_{os.getpid()}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    upgrade(eng)
    eng.dispose()
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_template):
    admin = _pg_admin()
    name = f"rs_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'rational.db'}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request):
    """Runs a test once on a migrated SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def app_db(db_url, monkeypatch):
    """DATABASE_URL for the Streamlit app under test, and an engine on the same database for setup and
    assertions. The app caches its engine in st.cache_resource: cleared so each test sees its own database."""
    import streamlit as st

    monkeypatch.setenv("DATABASE_URL", db_url)
    st.cache_resource.clear()
    eng = make_engine(db_url)
    yield eng
    st.cache_resource.clear()
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url):
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own RATIONAL_HOME and no inherited DATABASE_URL."""
    monkeypatch.setenv("RATIONAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RATIONAL_ARTIFACTS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
