"""Engine selection, SQLite pragmas, foreign keys, migrations from an empty database, session rollback."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import database_url, get_engine, make_engine, rational_home, write_engine
from db.migrate import current_heads, head_revisions, schema_diff, upgrade
from db.models import Prompt
from tests.conftest import PG_URL, _pg_admin, _require_pg


def test_default_database_is_sqlite_under_rational_home(tmp_path, monkeypatch):
    home = tmp_path / "custom-home"
    monkeypatch.setenv("RATIONAL_HOME", str(home))
    assert database_url() == f"sqlite:///{home / 'rational.db'}"
    eng = get_engine()
    assert eng.dialect.name == "sqlite"
    with eng.connect() as c:
        c.execute(text("SELECT 1"))
    assert (home / "rational.db").exists()
    eng.dispose()


def test_rational_home_defaults_to_dot_rational(tmp_path, monkeypatch):
    monkeypatch.delenv("RATIONAL_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rational_home() == Path(tmp_path) / ".rational"
    assert database_url() == f"sqlite:///{tmp_path / '.rational' / 'rational.db'}"


@pytest.mark.parametrize("given", ["postgres://u@h:5432/d", "postgresql://u@h:5432/d"])
def test_database_url_names_psycopg_driver(monkeypatch, given):
    monkeypatch.setenv("DATABASE_URL", given)
    assert database_url() == "postgresql+psycopg://u@h:5432/d"


@pytest.mark.postgres
def test_database_url_selects_postgresql(pg_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    eng = get_engine()
    assert eng.dialect.name == "postgresql"
    with eng.connect() as c:
        assert c.execute(text("SELECT current_database()")).scalar() == make_url(pg_url).database
    eng.dispose()


def test_sqlite_runs_wal_with_foreign_keys(sqlite_engine):
    with sqlite_engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar().lower() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert c.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_foreign_keys_are_enforced(engine):
    with pytest.raises(IntegrityError):
        with Session(engine) as s:
            s.add(Prompt(project_id=1, set_id=987654, text="orphan", sha256="0" * 64, expected_behavior="refuse"))
            s.commit()
    with Session(engine) as s:
        assert s.execute(select(func.count(Prompt.id))).scalar() == 0


def test_write_engine_takes_the_sqlite_write_lock_up_front(sqlite_engine):
    """A read-then-write transaction holds the lock from BEGIN, so a second writer waits instead of racing."""
    with write_engine(sqlite_engine).begin() as c:
        c.execute(text("SELECT COUNT(*) FROM job"))
        other = make_engine(str(sqlite_engine.url), connect_args={"timeout": 0.2, "check_same_thread": False})
        with pytest.raises(Exception, match="locked"):
            with other.begin() as c2:
                c2.execute(text("PRAGMA busy_timeout=200"))
                c2.execute(text("INSERT INTO project (name, created_at) VALUES ('x', '2026-01-01')"))
        other.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    _require_pg()
    name = f"rs_empty_{uuid.uuid4().hex[:10]}"
    with _pg_admin().connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with _pg_admin().connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_upgrade_brings_an_empty_database_to_head_idempotently(empty_url):
    eng = make_engine(empty_url)
    assert current_heads(eng) == ()
    upgrade(eng)
    assert current_heads(eng) == head_revisions()
    assert schema_diff(eng) == []
    upgrade(eng)  # a second run is a no-op, not an error
    assert current_heads(eng) == head_revisions()
    with eng.connect() as c:  # the migration seeds the default project that imports write into
        assert c.execute(text("SELECT COUNT(*) FROM project WHERE id = 1")).scalar() == 1
    eng.dispose()


def test_a_big_import_refreshes_the_planner_statistics(engine, tmp_path):
    """Without statistics SQLite joins prompts and traces in the slow order (Browse 10x slower at 100k)."""
    from sqlalchemy import text

    from curation.prompts.importer import ImportConfig, PromptImporter

    def analysed() -> bool:
        with engine.connect() as c:
            if engine.dialect.name == "sqlite":
                return bool(c.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"))
                            .scalar()) and bool(c.execute(text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = "
                                                               "'prompt'")).scalar())
            return c.execute(text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                  "WHERE relname = 'prompt'")).scalar()

    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small.write_text("prompt\n" + "".join(f"small {i}\n" for i in range(10)))
    big.write_text("prompt\n" + "".join(f"big prompt {i}\n" for i in range(1500)))
    PromptImporter(engine, ImportConfig(set_name="small", behavior="refuse")).run(small)
    assert not analysed()
    PromptImporter(engine, ImportConfig(set_name="big", behavior="refuse")).run(big)
    assert analysed()
