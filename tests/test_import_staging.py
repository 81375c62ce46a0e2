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
