"""Large imports on SQLite: written in committed chunks (the write lock is free between them, so annotators are
never blocked for long), invisible until the import is complete, and cleaned up when it fails or its worker is
killed. BATCH is made small so that a few hundred rows take several chunks."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

import curation.prompts.importer as importer
from curation.prompts.importer import ImportConfig, PromptImporter
from db.crud import count_prompts
from db.filters import PromptFilter
from db.models import Prompt, PromptImport, PromptSet

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(set_name="big", mapping={"text": "prompt"}, behavior="refuse")


def _csv(path: Path, n: int, start: int = 0) -> Path:
    path.write_text("prompt\n" + "".join(f"how do I do thing number {i}?\n" for i in range(start, start + n)))
    return path


def _stored(engine) -> int:
    """Rows in the table, staged or not (Core: no visibility rule)."""
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM prompt")).scalar()


def test_chunks_leave_the_lock_free_and_appear_at_once(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "BATCH", 50)
    db = sqlite_engine.url.database
    during: list[tuple[int, int, int]] = []

    def progress(done, total, phase):
        if phase != "writing":
            return
        # Another writer, as an annotator's submit: it gets the lock within 1 s, between two chunks.
        w = sqlite3.connect(db, timeout=1, isolation_level=None)
        w.execute("BEGIN IMMEDIATE")
        w.execute("ROLLBACK")
        w.close()
        with Session(sqlite_engine) as s:
            orm = s.execute(select(func.count()).select_from(Prompt)).scalar()
        during.append((count_prompts(sqlite_engine, PromptFilter()), orm, _stored(sqlite_engine)))

    report = PromptImporter(sqlite_engine, ImportConfig(**CFG)).run(_csv(tmp_path / "big.csv", 400),
                                                                     progress=progress)
    assert report.status == "succeeded" and report.inserted == 400
    assert len(during) == 8 and all(page == 0 and orm == 0 for page, orm, _ in during)  # nothing half-visible
    assert [stored for *_, stored in during] == list(range(50, 401, 50))  # each chunk committed on its own
    assert count_prompts(sqlite_engine, PromptFilter(set_names=["big"])) == 400


def test_a_failed_chunked_import_leaves_nothing(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "BATCH", 50)

    def boom(done, total, phase):
        if phase == "writing" and done >= 150:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        PromptImporter(sqlite_engine, ImportConfig(**CFG)).run(_csv(tmp_path / "big.csv", 400), progress=boom)
    assert _stored(sqlite_engine) == 0
    with Session(sqlite_engine) as s:
        assert s.execute(select(PromptSet.name)).scalars().all() == []
        imps = s.execute(select(PromptImport.status, PromptImport.inserted)).all()
    assert imps == [("failed", 0)]
    # The same file imports cleanly afterwards: no staged leftovers count as duplicates.
    assert PromptImporter(sqlite_engine, ImportConfig(**CFG)).run(tmp_path / "big.csv").inserted == 400


_KILLED_WORKER = """
import os, signal, sys
import curation.prompts.importer as importer
from db.engine import make_engine

importer.BATCH = 50
flush = importer.PromptImporter._flush
calls = []

def flush_then_die(self, *a, **k):  # kill -9 after two committed chunks
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return flush(self, *a, **k)

importer.PromptImporter._flush = flush_then_die
from app.worker import Worker
Worker(make_engine(os.environ["DATABASE_URL"]), heartbeat_s=0.5).run(once=True)
"""


def test_a_killed_import_is_reaped_by_the_next_worker(sqlite_url, sqlite_engine, tmp_path):
    """A real worker is killed with SIGKILL between two chunks; its rows stay invisible, and the next worker
    deletes them and marks the import failed."""
    from app.worker import Worker
    from curation.prompts.jobs import enqueue_import
    from db.jobs import get_job

    enqueue_import(sqlite_engine, None, str(_csv(tmp_path / "big.csv", 400)), ImportConfig(**CFG))
    proc = subprocess.run([sys.executable, "-c", _KILLED_WORKER], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DATABASE_URL": sqlite_url})
    assert proc.returncode == -9, proc.stderr
    assert _stored(sqlite_engine) == 100 and count_prompts(sqlite_engine, PromptFilter()) == 0
    time.sleep(1.5)
    Worker(sqlite_engine, stale_after_s=1.0).run(once=True)  # reaps before it claims
    assert _stored(sqlite_engine) == 0
    with Session(sqlite_engine) as s:
        imp = s.execute(select(PromptImport)).scalars().one()
    assert imp.status == "failed" and "ended" in imp.errors[0]["message"]
    assert get_job(sqlite_engine, imp.job_id).status == "failed"


def test_a_second_import_waits_for_the_first_instead_of_losing_rows(sqlite_engine, tmp_path, monkeypatch):
    """B's duplicate check would count A's hidden rows; if A then failed, those rows would be gone from both."""
    monkeypatch.setattr(importer, "BATCH", 50)
    second: list[object] = []

    def during_a(done, total, phase):
        if phase == "writing" and not second:
            with pytest.raises(importer.ImportFileError, match="still being written") as e:
                PromptImporter(sqlite_engine, ImportConfig(**{**CFG, "set_name": "b"})).run(
                    _csv(tmp_path / "b.csv", 100, start=150))
            second.append(e.value)

    report = PromptImporter(sqlite_engine, ImportConfig(**CFG)).run(_csv(tmp_path / "a.csv", 200),
                                                                     progress=during_a)
    assert second and report.inserted == 200
    assert count_prompts(sqlite_engine, PromptFilter(set_names=["b"])) == 0
    assert PromptImporter(sqlite_engine, ImportConfig(**{**CFG, "set_name": "b"})).run(tmp_path / "b.csv").inserted == 50


def test_an_import_reaped_while_it_runs_does_not_publish_what_is_left(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "BATCH", 50)

    after: list[int] = []

    def reaper_strikes(done, total, phase):
        if phase == "writing" and done > 100:
            after.append(done)  # a chunk written after the reaping: visible, since its import is no longer staging
        if phase == "writing" and done == 100:
            with Session(sqlite_engine) as s:
                imp = s.execute(select(PromptImport.id).where(PromptImport.status == "staging")).scalar()
            importer.discard_staged(sqlite_engine, imp, reason="reaped in the test")

    with pytest.raises(RuntimeError, match="reaped"):
        PromptImporter(sqlite_engine, ImportConfig(**CFG)).run(_csv(tmp_path / "big.csv", 400),
                                                              progress=reaper_strikes)
    assert _stored(sqlite_engine) == 0 and count_prompts(sqlite_engine, PromptFilter()) == 0
    assert after == []


_KILLED_CLI = """
import os, signal, sys
import curation.prompts.importer as importer
importer.BATCH = 50
flush = importer.PromptImporter._flush
calls = []

def flush_then_die(self, *a, **k):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return flush(self, *a, **k)

importer.PromptImporter._flush = flush_then_die
from app.cli import main
sys.argv = ["rational", "import", sys.argv[1], "--set", "big", "--map", "text=prompt", "--behavior", "refuse"]
main()
"""


def test_a_killed_cli_import_is_reaped_once_it_has_gone_quiet(sqlite_url, sqlite_engine, tmp_path):
    """`rational import` runs without a job: killed with SIGKILL, its hidden rows are deleted once nothing has been
    written for the stale period (zero here)."""
    from datetime import timedelta

    proc = subprocess.run([sys.executable, "-c", _KILLED_CLI, str(_csv(tmp_path / "big.csv", 400))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "DATABASE_URL": sqlite_url})
    assert proc.returncode == -9, proc.stderr
    assert _stored(sqlite_engine) == 100 and count_prompts(sqlite_engine, PromptFilter()) == 0
    assert importer.reap_imports(sqlite_engine) == []  # not quiet for ten minutes yet: it may still be running
    assert len(importer.reap_imports(sqlite_engine, stale_after=timedelta(0))) == 1
    assert _stored(sqlite_engine) == 0
