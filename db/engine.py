"""One engine factory. `DATABASE_URL` picks the database; the default is a SQLite file under RATIONAL_HOME."""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine

import db.visibility  # noqa: F401  (registers the rule that hides a staging import's prompts)
from core.settings import get_settings


def rational_home() -> Path:
    return get_settings().home()


def artifact_root() -> Path:
    """Where uploads, exports, runs and reports live; paths under it are stored relative (db.models.ArtifactPath)."""
    return get_settings().artifacts()


def database_url() -> str:
    url = get_settings().database_url
    if url:
        # Heroku-style URLs name the driver-less scheme; we ship psycopg 3.
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    return f"sqlite:///{rational_home() / 'rational.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _private_file(path: str | None) -> None:
    """Create a new SQLite file owner-only (SQLite would make it 0644; its -wal and -shm files copy the mode)."""
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass  # a missing folder or a race: SQLite reports it (or creates the file) on connect


def make_engine(url: str | None = None, **kwargs) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite"):
        _private_file(make_url(url).database)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is broken for SAVEPOINT and DDL; let SQLAlchemy emit
        # BEGIN itself (SQLAlchemy's documented pysqlite recipe).
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY, busy_timeout does not
            # apply) when another writer committed in between; read-then-write transactions use write_engine().
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate")
                                 else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def busy(error: BaseException) -> bool:
    """A write that gave up waiting for the lock (SQLite "database is locked" / PostgreSQL lock timeout): the
    caller may simply try again."""
    text = str(error).lower()
    return "database is locked" in text or "database is busy" in text or "lock timeout" in text


def write_engine(engine: Engine) -> Engine:
    """The same engine, but its transactions take SQLite's write lock up front (no effect on PostgreSQL)."""
    return engine.execution_options(sqlite_immediate=True)


BIG_WRITE = 1000  # rows written in one go after which the planner's statistics are refreshed


def refresh_statistics(engine: Engine, tables: tuple[str, ...], rows: int) -> None:
    """After a bulk write has committed, refresh the query planner's statistics for these tables. SQLite keeps none
    until ANALYZE runs, and without them it joins prompts and traces in the slow order (a Browse page at 100k
    traces: 30 ms with statistics, 300-700 ms without); PostgreSQL's autovacuum catches up only later. Best effort:
    the write it follows has succeeded whatever happens here."""
    if rows < BIG_WRITE:
        return
    try:
        # SQLite reads the whole table (about 1 s per million rows) in its own short transaction; its sampled
        # mode (analysis_limit) caps the counts it records and brings the slow join order back.
        with write_engine(engine).begin() as conn:
            for table in tables:
                conn.execute(text(f"ANALYZE {table}"))
    except Exception as e:
        logging.getLogger("rational.db").warning("statistics refresh of %s skipped: %s", ", ".join(tables), e)


@lru_cache(maxsize=8)
def _cached_engine(url: str) -> Engine:
    return make_engine(url)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for a URL (the current default URL when None)."""
    return _cached_engine(url or database_url())
