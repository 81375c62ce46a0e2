"""Backups: a consistent copy of the database and of the artifact root's data folders, taken while the app and
workers run, and its restore into an empty database and a fresh artifact root.

A backup is a folder: `database.sqlite` (SQLite's online backup API) or `database.pgdump` (`pg_dump`, custom
format, from an exported snapshot), `artifacts/` (uploads, exports, training runs, loop reports; caches such as the
converted models are made again on use) and `manifest.json` (schema revision and every table's row count, read in
the same snapshot as the copy). It is written under a temporary name and renamed when complete, so a folder that
exists is a whole backup. Restore checks everything before it writes: an empty database, no file it would
overwrite; then it upgrades the schema (a backup from an older release) and checks every table's count."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from core.settings import child_env
from db.models import utcnow

MANIFEST = "manifest.json"
FORMAT = 1
DATA_FOLDERS = ("uploads", "exports", "runs", "results")  # what the database points at, under the artifact root
SKIP_TABLES = ("alembic_version",)


class BackupError(RuntimeError):
    """A backup or restore cannot go on; the message says why and what to do."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} was not found on PATH: install the PostgreSQL client tools (Debian/Ubuntu: "
                          "postgresql-client) of the server's major version")
    return path


def _libpq(engine: Engine) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment that carries it (a command line is visible to
    every user of the machine)."""
    url = engine.url
    env = child_env(**({"PGPASSWORD": str(url.password)} if url.password else {}))
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [x for x in (res.stderr or res.stdout).splitlines() if x.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit status {res.returncode}'}")


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names if n not in SKIP_TABLES}


def _sqlite_revision(conn: sqlite3.Connection) -> list[str]:
    try:
        return sorted(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))
    except sqlite3.OperationalError:
        return []


def _counts(conn) -> dict[str, int]:
    names = sorted(inspect(conn).get_table_names())
    return {n: conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names if n not in SKIP_TABLES}


def _revision(conn) -> list[str]:
    if "alembic_version" not in inspect(conn).get_table_names():
        return []
    return sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def backup(engine: Engine, dest: Path, artifacts: Path) -> dict[str, Any]:
    """Copy the database and the artifact root's data folders into the new folder `dest`; returns the manifest."""
    dest = Path(dest).expanduser().absolute()
    if dest.exists():
        raise BackupError(f"{dest} already exists; a backup goes into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        manifest: dict[str, Any] = {"format": FORMAT, "created_at": utcnow().isoformat(),
                                    "database": engine.dialect.name}
        if engine.dialect.name == "sqlite":
            source = sqlite3.connect(f"file:{engine.url.database}?mode=ro", uri=True)
            copy = sqlite3.connect(tmp / "database.sqlite")
            try:
                source.backup(copy)  # one consistent snapshot, even while others write
                manifest.update(revision=_sqlite_revision(copy), counts=_sqlite_counts(copy))
            finally:
                copy.close()
                source.close()
        elif engine.dialect.name == "postgresql":
            pg_dump = _tool("pg_dump")
            url, env = _libpq(engine)
            with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
                with conn.begin():  # the counts and the dump read one snapshot
                    snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                    manifest.update(revision=_revision(conn), counts=_counts(conn))
                    _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                          f"--file={tmp / 'database.pgdump'}", f"--dbname={url}"], env, "pg_dump")
        else:
            raise BackupError(f"backups support SQLite and PostgreSQL, not {engine.dialect.name}")
        for folder in DATA_FOLDERS:  # after the snapshot: every file a copied row points at is already written
            src = artifacts / folder
            if src.is_dir():
                shutil.copytree(src, tmp / "artifacts" / folder, symlinks=True,
                                ignore=shutil.ignore_patterns("*.partial", ".*.partial"))
        manifest["files"] = sum(1 for p in (tmp / "artifacts").rglob("*") if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, dest)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(src: Path) -> dict[str, Any]:
    path = Path(src) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{path}: not a backup made by `rational db backup` ({e})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r}, this release reads {FORMAT}")
    return manifest


def _target_rows(engine: Engine) -> int:
    if engine.dialect.name == "sqlite" and not Path(engine.url.database or "").exists():
        return 0
    with engine.connect() as conn:
        return sum(_counts(conn).values())


def restore(engine: Engine, src: Path, artifacts: Path) -> dict[str, Any]:
    """Restore the backup folder `src` into the (empty) database of `engine` and the artifact root; returns the
    manifest. Nothing is written until every check passed."""
    from db.migrate import upgrade

    src = Path(src).expanduser().absolute()
    manifest = read_manifest(src)
    if manifest["database"] != engine.dialect.name:
        raise BackupError(f"{src} is a {manifest['database']} backup; the database here is {engine.dialect.name}")
    rows = _target_rows(engine)
    if rows:
        raise BackupError(f"the database already holds {rows} rows; restore goes into an empty database (point "
                          "DATABASE_URL or RATIONAL_HOME at a new one)")
    clashes = [p.relative_to(src / "artifacts") for p in (src / "artifacts").rglob("*")
               if p.is_file() and (artifacts / p.relative_to(src / "artifacts")).exists()]
    if clashes:
        raise BackupError(f"{len(clashes)} files already exist under the artifact root {artifacts} (first: "
                          f"{clashes[0]}); restore into a fresh artifact root, nothing is overwritten")
    if engine.dialect.name == "sqlite":
        target = Path(engine.url.database)
        engine.dispose()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(fd)
        source, copy = sqlite3.connect(src / "database.sqlite"), sqlite3.connect(tmp)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        os.chmod(tmp, 0o600)
        for suffix in ("-wal", "-shm"):  # an empty database's journal must not be applied to the restored file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, target)
    else:
        pg_restore = _tool("pg_restore")
        url, env = _libpq(engine)
        _run([pg_restore, "--no-owner", "--no-privileges", "--clean", "--if-exists", "--single-transaction",
              "--exit-on-error", f"--dbname={url}", str(src / "database.pgdump")], env, "pg_restore")
    if (src / "artifacts").is_dir():
        shutil.copytree(src / "artifacts", artifacts, symlinks=True, dirs_exist_ok=True)
    upgrade(engine)
    with engine.connect() as conn:
        got = _counts(conn)
    lost = {t: (n, got.get(t, 0)) for t, n in manifest["counts"].items() if got.get(t, 0) < n}
    if lost:
        raise BackupError(f"restored tables hold fewer rows than the backup: {lost}")
    return manifest
