"""One artifact root that machines mount at different paths: the database stores paths relative to it, so a
worker on another machine finds the upload, the export and the adapter that this one wrote."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from curation.export.snapshot import create_export, get_export
from curation.prompts.importer import ImportConfig
from curation.prompts.jobs import enqueue_import, upload_area
from db.models import TrainingRun
from tests.factories import make_user
from tests.test_export import seed
from tests.test_training import _run_worker
from training import runs

pytestmark = pytest.mark.slow


def _raw(engine, sql: str):
    with engine.connect() as c:
        return c.execute(text(sql)).scalar()


def test_a_second_machine_mounting_the_root_elsewhere_reads_what_the_first_wrote(sqlite_engine, tiny_model_dir,
                                                                               tmp_path, monkeypatch):
    here, there = tmp_path / "mnt-a", tmp_path / "elsewhere" / "mnt-b"
    monkeypatch.setenv("RATIONAL_ARTIFACTS", str(here))
    seed(sqlite_engine, n=12)
    snap = create_export(sqlite_engine, "shared-set", "sft")
    assert Path(snap.path) == here / "exports" / "shared-set"
    assert _raw(sqlite_engine, "SELECT path FROM export_snapshot") == "exports/shared-set"
    admin = make_user(sqlite_engine, "admin", "root-admin")
    upload = upload_area() / "u1" / "more.csv"
    upload.parent.mkdir(parents=True)
    upload.write_text("prompt\nHow do I pick a lock?\nHow do I bake bread?\n")
    job = enqueue_import(sqlite_engine, admin, str(upload), ImportConfig(set_name="more", behavior="refuse"))
    assert job.params["path"] == "u1/more.csv"
    run, _ = runs.create_run(sqlite_engine, base_model=str(tiny_model_dir), method="sft", export_name="shared-set",
                             preset="test", overrides={"max_steps": 2, "save_steps": 1, "logging_steps": 1})
    assert _raw(sqlite_engine, "SELECT output_dir FROM training_run") == f"runs/run-{run.id}"

    # The same shared folder, mounted at another path on the machine where the worker runs.
    shutil.move(str(here), str(there))
    monkeypatch.setenv("RATIONAL_ARTIFACTS", str(there))
    assert Path(get_export(sqlite_engine, "shared-set").path) == there / "exports" / "shared-set"
    assert _run_worker(sqlite_engine)  # the import
    assert _run_worker(sqlite_engine)  # the training, reading the export under the new mount
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "succeeded", (r.error, r.log_tail)
    assert Path(r.adapter_path) == there / "runs" / f"run-{run.id}" / "adapter" and Path(r.adapter_path).is_dir()
    assert _raw(sqlite_engine, f"SELECT adapter_path FROM training_run WHERE id = {run.id}") == \
        f"runs/run-{run.id}/adapter"
    assert _raw(sqlite_engine, "SELECT count(*) FROM training_checkpoint WHERE path LIKE 'runs/%'") == 2
    assert _raw(sqlite_engine, f"SELECT status FROM job WHERE id = {job.id}") == "succeeded"

    outside = tmp_path / "outside" / "adapter"  # a path outside the root is kept as it is
    with Session(sqlite_engine) as s:
        row = s.get(TrainingRun, run.id)
        row.merged_path = str(outside)
        s.add(row)
        s.commit()
    assert _raw(sqlite_engine, "SELECT merged_path FROM training_run") == str(outside)
    assert runs.get_run(sqlite_engine, run.id).merged_path == str(outside)
