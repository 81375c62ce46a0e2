"""Distributed training through the worker: `accelerate launch` with 2 CPU processes in a gloo group trains the
tiny model (the same code path as one process per GPU). The loss is recorded once per step, one adapter is written
(by the main process), and cancel and resume work across both processes."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from db.jobs import get_job
from tests.test_training import _export, _run_worker, _wait
from training import runs

pytestmark = pytest.mark.slow


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process."""
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        procs[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return procs


def _ranks(launcher: int) -> list[int]:
    """The launcher's children (torchrun starts each rank in a session of its own)."""
    return [pid for pid, (ppid, state) in _processes().items() if ppid == launcher and state != "Z"]


def _running(pids: list[int]) -> list[int]:
    procs = _processes()
    return [p for p in pids if p in procs and procs[p][1] != "Z"]


def test_two_cpu_processes_train_cancel_and_resume_through_the_worker(sqlite_engine, tiny_model_dir, tmp_path):
    snap = _export(sqlite_engine, tmp_path, "sft")
    run, job = runs.create_run(sqlite_engine, base_model=str(tiny_model_dir), method="sft", export_name=snap.name,
                               preset="test", overrides={"num_processes": 2, "max_steps": 5000, "save_steps": 2,
                                                         "logging_steps": 1, "save_total_limit": 2},
                               output_root=tmp_path / "runs")
    worker = threading.Thread(target=_run_worker, args=(sqlite_engine,), daemon=True)
    worker.start()
    _wait(lambda: runs.run_checkpoints(sqlite_engine, run.id), timeout=300, what="a checkpoint")
    launcher = runs.get_run(sqlite_engine, run.id).pid
    ranks = _ranks(launcher)
    assert len(ranks) == 2
    runs.cancel_run(sqlite_engine, run.id)
    worker.join(timeout=90)
    assert not worker.is_alive()
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "cancelled" and get_job(sqlite_engine, job.id).status == "cancelled"
    _wait(lambda: not _running([launcher, *ranks]), timeout=30, what="every training process to end")
    ckpt = max(c.step for c in runs.run_checkpoints(sqlite_engine, run.id))

    runs.resume_run(sqlite_engine, run.id, overrides={"max_steps": ckpt + 2})
    assert _run_worker(sqlite_engine)
    r = runs.get_run(sqlite_engine, run.id)
    assert r.status == "succeeded", (r.error, r.log_tail)
    log = (Path(r.output_dir) / "train.log").read_text()
    assert "accelerate.commands.launch" in get_job(sqlite_engine, r.job_id).log_tail
    assert "training on 2 process(es)" in log and "resuming from" in log and f"checkpoint-{ckpt}" in log
    steps = [m["step"] for m in runs.run_metrics(sqlite_engine, run.id) if m["kind"] == "train"]
    assert steps == list(range(1, ckpt + 3))  # each step's loss once, none missing
    assert r.metrics["world_size"] == 2 and r.global_step == ckpt + 2
    assert log.count("adapter saved to") == 1  # the main process alone publishes it
    adapter = Path(r.adapter_path)
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter.parent / "adapter.partial").exists()
