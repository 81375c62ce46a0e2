"""Distributed training through the worker: `accelerate launch` with 2 CPU processes in a gloo group trains the
tiny model (the same code path as one process per GPU). The loss is recorded once per step, one adapter is written
(by the main process), and cancel and resume work across both processes."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from db.jobs import get_job
from tests.test_training import _export, _run_worker, _running, _wait
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
    _wait(lambda: not any(map(_running, [launcher, *ranks])), timeout=30, what="every training process to end")
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


def test_when_the_worker_dies_both_processes_stop_together_at_a_checkpoint(sqlite_url, sqlite_engine,
                                                                            tiny_model_dir, tmp_path):
    """The launcher is started as the worker would start it, with a stand-in process as the worker's PID; killing
    that process makes every rank agree to stop (one collective decision), save a checkpoint and publish nothing."""
    import os
    import signal
    import subprocess

    from training.config import TrainConfig
    from training.launch import train_command

    snap = _export(sqlite_engine, tmp_path, "sft")
    run, job = runs.create_run(sqlite_engine, base_model=str(tiny_model_dir), method="sft", export_name=snap.name,
                               preset="test", overrides={"num_processes": 2, "max_steps": 5000, "save_steps": 3,
                                                         "logging_steps": 1, "save_total_limit": 2},
                               output_root=tmp_path / "runs")
    runs.cancel_run(sqlite_engine, run.id)  # no worker will take the job: this test is the worker
    owner = subprocess.Popen(["sleep", "600"])
    log = tmp_path / "train.log"
    cmd = train_command(TrainConfig.from_dict(runs.get_run(sqlite_engine, run.id).config), run.id, resume=False)
    with open(log, "wb") as fh:
        launcher = subprocess.Popen(cmd + ["--owner-pid", str(owner.pid)], stdout=fh, stderr=subprocess.STDOUT,
                                    env={**os.environ, "DATABASE_URL": sqlite_url}, start_new_session=True,
                                    cwd=Path(__file__).resolve().parents[1])
    try:
        _wait(lambda: runs.run_checkpoints(sqlite_engine, run.id), timeout=300, what="a checkpoint")
        ranks = _ranks(launcher.pid)
        assert len(ranks) == 2
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        launcher.wait(timeout=120)
    finally:
        for p in (owner, launcher):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL) if p is launcher else p.kill()
    _wait(lambda: not any(map(_running, ranks)), timeout=30, what="both ranks to end")
    text = log.read_text()
    assert text.count("the worker process is gone; stopping at step") == 1, text[-3000:]
    assert "no adapter" in text
    r = runs.get_run(sqlite_engine, run.id)
    assert r.adapter_path is None and not (Path(r.output_dir) / "adapter").exists() and r.global_step < 5000
    assert max(c.step for c in runs.run_checkpoints(sqlite_engine, run.id)) == r.global_step  # saved on stop


def test_the_launch_command_and_the_accelerate_config_name(tmp_path):
    from core.settings import get_settings
    from training.config import ConfigError, TrainConfig
    from training.launch import accelerate_configs, train_command

    assert "accelerate.commands.launch" not in " ".join(train_command(TrainConfig(), 1, resume=False))
    ddp = train_command(TrainConfig(num_processes=4), 1, resume=True)
    assert ddp[ddp.index("--num_processes") + 1] == "4" and "--multi_gpu" in ddp and ddp[-1] == "--resume"
    for bad in ("../etc/passwd.yaml", "/etc/fsdp.yaml", "fsdp.sh", ".hidden.yaml"):
        with pytest.raises(ConfigError, match="accelerate_config"):
            TrainConfig(accelerate_config=bad).validate()
    with pytest.raises(ConfigError, match="is not in"):
        train_command(TrainConfig(accelerate_config="fsdp.yaml"), 1, resume=False)
    accelerate_configs().mkdir(parents=True)
    (accelerate_configs() / "fsdp.yaml").write_text("distributed_type: FSDP\nnum_processes: 8\n")
    fsdp = train_command(TrainConfig(accelerate_config="fsdp.yaml"), 1, resume=False)
    assert "--num_processes" not in fsdp  # the file's own count stands
    assert fsdp[fsdp.index("--config_file") + 1] == str(get_settings().home() / "accelerate" / "fsdp.yaml")
