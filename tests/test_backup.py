"""Backups on real SQLite and PostgreSQL: taken while others import and review, restored into an empty database and
a fresh artifact root, where every row and file is found and the accounts sign in."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from curation.auth import authenticate
from curation.export.snapshot import create_export
from curation.export.spec import ExportFilter
from curation.review.annotations import auto_decide, submit_annotation
from curation.review.claims import claim_next
from curation.review.queues import create_queue
from db.backup import BackupError, backup, read_manifest, restore
from db.engine import artifact_root, make_engine
from db.migrate import ensure_schema
from db.models import ExportSnapshot, Trace
from tests.conftest import PG_URL, _pg_admin
from tests.factories import PASSWORD, make_traces, make_users


@pytest.fixture
def empty_target(db_url, tmp_path):
    """An empty database of the same kind: a new SQLite file, or a new PostgreSQL database with no tables."""
    if db_url.startswith("sqlite"):
        (tmp_path / "restored").mkdir()
        yield make_engine(f"sqlite:///{tmp_path / 'restored' / 'rational.db'}")
        return
    name = f"rs_restore_{uuid.uuid4().hex[:10]}"
    with _pg_admin().connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    yield eng
    eng.dispose()
    with _pg_admin().connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_backup_taken_during_imports_and_review_restores_every_row_and_file(engine, empty_target, tmp_path,
                                                                           monkeypatch):
    users = make_users(engine)
    ids = make_traces(engine, 6)
    auto_decide(engine, users["admin"], {i: "approved" for i in ids})
    snap = create_export(engine, "before-backup", "sft", ExportFilter(statuses=["approved"]), formats=["jsonl"])
    source_root = artifact_root()
    make_traces(engine, 40, set_name="to-review")
    queue = create_queue(engine, users["admin"], "busy", {"set_names": ["to-review"]}, overlap=1,
                         members=[users["reviewer"].id])
    stop, busy_errors, rounds = threading.Event(), [], [0]

    def busy():  # imports and reviews go on while the backup runs
        try:
            while not stop.is_set():
                make_traces(engine, 3, set_name=f"busy{rounds[0]}")
                c = claim_next(engine, users["reviewer"], queue.id)
                assert c is not None, "the queue ran out before the backup ended"
                submit_annotation(engine, users["reviewer"], c.trace_id, decision="approve",
                                  trace_version=c.trace_version, queue_id=queue.id)
                rounds[0] += 1
        except Exception as e:  # pragma: no cover - reported below
            busy_errors.append(e)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        while rounds[0] < 2 and worker.is_alive():
            threading.Event().wait(0.05)
        manifest = backup(engine, tmp_path / "bk", source_root)
    finally:
        stop.set()
        worker.join(60)
    assert not busy_errors and rounds[0] >= 2, busy_errors
    assert read_manifest(tmp_path / "bk") == manifest and manifest["files"] >= 1
    assert not list(tmp_path.glob(".bk.*"))  # no partial folder left
    with pytest.raises(BackupError, match="already exists"):
        backup(engine, tmp_path / "bk", source_root)

    # Restore into the empty database and a fresh artifact root (another RATIONAL_HOME).
    monkeypatch.setenv("RATIONAL_HOME", str(tmp_path / "restored"))
    target_root = artifact_root()
    restore(empty_target, tmp_path / "bk", target_root)
    with Session(empty_target) as s:
        for table, n in manifest["counts"].items():
            assert s.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() == n, table
        snaps = list(s.execute(select(ExportSnapshot)).scalars())
        traces = s.execute(select(func.count(Trace.id))).scalar_one()
    assert traces >= 6 + 3 * 2
    assert [x.name for x in snaps] == ["before-backup"] and Path(snaps[0].path).is_relative_to(target_root)
    copied = sorted(p.relative_to(snaps[0].path) for p in Path(snaps[0].path).rglob("*") if p.is_file())
    assert copied and copied == sorted(p.relative_to(snap.path) for p in Path(snap.path).rglob("*") if p.is_file())
    assert authenticate(empty_target, "reviewer", PASSWORD).username == "reviewer"

    # A second restore finds the database full and writes nothing.
    with pytest.raises(BackupError, match="already holds .* rows; restore goes into an empty database"):
        restore(empty_target, tmp_path / "bk", target_root)


def test_restore_refuses_to_overwrite_files_and_reads_only_real_backups(engine, empty_target, tmp_path,
                                                                        monkeypatch):
    users = make_users(engine)
    ids = make_traces(engine, 2)
    auto_decide(engine, users["admin"], {i: "approved" for i in ids})
    create_export(engine, "x", "sft", ExportFilter(statuses=["approved"]), formats=["jsonl"])
    backup(engine, tmp_path / "bk", artifact_root())
    with pytest.raises(BackupError, match="not a backup made by `rational db backup`"):
        restore(empty_target, tmp_path, tmp_path / "elsewhere")
    # The source's own artifact root holds every file already: refused before the database is touched.
    with pytest.raises(BackupError, match="files already exist under the artifact root"):
        restore(empty_target, tmp_path / "bk", artifact_root())
    ensure_schema(empty_target)
    with Session(empty_target) as s:
        assert s.execute(select(func.count(Trace.id))).scalar_one() == 0
