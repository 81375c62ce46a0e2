"""Job kind `train`. Importing this module registers it with db.jobs (the worker does).

`train` runs the trainer in a child process (`python -m training.run_job`, or `accelerate launch` of it for several
processes; see training.launch): cancel kills the child's process group within
seconds and frees its memory; a child that dies (OOM killer, a signal, an exception) leaves the run `failed` with
the tail of its log.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import update

from core.settings import child_env
from curation.export.snapshot import create_export
from curation.export.spec import ExportFilter, ExportOptions
from db import jobs as jobrows
from db.jobs import JobCancelled, JobContext, register_job_kind
from db.models import TrainingRun, utcnow
from training.config import TrainConfig
from training.launch import train_command

POLL_S = 0.5
TERM_GRACE_S = 5.0
LOG_TAIL_BYTES = 6000
LOG_HEAD_BYTES = 1500


class TrainingFailed(Exception):
    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def _tail(path: Path, n: int = LOG_TAIL_BYTES, head: int = LOG_HEAD_BYTES) -> str:
    """The log's first lines (what was started on what) and its last `n` bytes (how it went and ended)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size <= head + n:
                fh.seek(0)
                return fh.read().decode("utf-8", "replace")
            fh.seek(0)
            first = fh.read(head).decode("utf-8", "replace").rsplit("\n", 1)[0]
            fh.seek(size - n)
            return first + "\n[…]\n" + fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a short grace."""
    for sig, wait in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def _build_export_first(ctx: JobContext, run, spec: dict) -> None:
    ctx.log(f"building export '{run.export_name}'")
    res = create_export(ctx.engine, run.export_name, run.method, ExportFilter.from_dict(spec.get("filter")),
                        ExportOptions.from_dict(spec.get("options")), formats=spec.get("formats"),
                        out_dir=spec.get("out_dir"), created_by=run.created_by, job_id=ctx.job_id,
                        progress=lambda d, t, phase: ctx.progress(0, None, f"export: {phase}"))
    ctx.log(res.summary())
    with ctx.engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run.id).values(export_id=res.id))


def _exit_reason(rc: int) -> str:
    if rc >= 0:
        return f"the training process exited with status {rc} (see the log tail)"
    try:
        name = signal.Signals(-rc).name
    except ValueError:
        name = "unknown signal"
    hint = "; out of memory, or killed by hand?" if -rc == signal.SIGKILL else ""
    return f"the training process was killed by signal {-rc} ({name}{hint})"


@register_job_kind("train", description="LoRA SFT/DPO training in a subprocess")
def run_train(ctx: JobContext, *, run_id: int, resume: bool = False, export: dict | None = None) -> dict:
    from training import runs

    run = runs.get_run(ctx.engine, run_id)
    if run is None:
        raise ValueError(f"training run {run_id} does not exist")
    try:
        if export is not None and run.export_id is None:
            _build_export_first(ctx, run, export)
    except BaseException as e:
        runs.set_status(ctx.engine, run_id, "cancelled" if isinstance(e, JobCancelled) else "failed",
                        error=f"export failed: {type(e).__name__}: {e}"[:4000])
        raise
    try:
        cmd = train_command(TrainConfig.from_dict(run.config), run_id, resume=resume) + ["--owner-pid",
                                                                                          str(os.getpid())]
    except Exception as e:
        runs.set_status(ctx.engine, run_id, "failed", error=str(e)[:4000])
        raise
    from curation.backends.engines import POOL

    POOL.close()  # a warm engine from the job before holds gigabytes that training needs (the next model differs)
    out = Path(run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train.log"
    env = child_env(DATABASE_URL=ctx.engine.url.render_as_string(hide_password=False), PYTHONUNBUFFERED="1",
                    TOKENIZERS_PARALLELISM="false")
    with open(log_path, "ab") as logf:
        logf.write(f"--- {'resume' if resume else 'start'} {utcnow().isoformat()} job {ctx.job_id}\n".encode())
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parent.parent))
    runs.set_status(ctx.engine, run_id, "running", pid=proc.pid, started_at=utcnow(), job_id=ctx.job_id,
                    error=None)
    ctx.log(f"training process {proc.pid}: {' '.join(cmd)}")
    last_tail = 0.0
    try:
        while proc.poll() is None:
            time.sleep(POLL_S)
            r = runs.get_run(ctx.engine, run_id)
            ctx.progress(r.global_step, r.max_steps, f"step {r.global_step}/{r.max_steps or '?'}")
            if time.monotonic() - last_tail > 3:
                last_tail = time.monotonic()
                runs.set_status(ctx.engine, run_id, "running", log_tail=_tail(log_path))
            if ctx.cancel_seen or jobrows.get_job(ctx.engine, ctx.job_id).cancel_requested:
                raise JobCancelled(f"job {ctx.job_id} cancelled")
    except JobCancelled:
        _stop(proc)
        runs.set_status(ctx.engine, run_id, "cancelled", pid=None, log_tail=_tail(log_path),
                        error="cancelled by request")
        raise
    except BaseException as e:
        _stop(proc)
        runs.set_status(ctx.engine, run_id, "failed", pid=None, log_tail=_tail(log_path),
                        error=f"the worker stopped the training: {type(e).__name__}: {e}"[:4000])
        raise
    rc = proc.returncode
    tail = _tail(log_path)
    if rc != 0:
        why = _exit_reason(rc)
        runs.set_status(ctx.engine, run_id, "failed", pid=None, log_tail=tail, error=why)
        ctx.log(tail[-3000:])
        raise TrainingFailed(why, {"run_id": run_id, "returncode": rc})
    runs.set_status(ctx.engine, run_id, "succeeded", pid=None, log_tail=tail)
    r = runs.get_run(ctx.engine, run_id)
    jobrows.set_progress(ctx.engine, ctx.job_id, r.global_step, r.max_steps or r.global_step, "done")
    return {"run_id": run_id, "adapter_path": r.adapter_path, "merged_path": r.merged_path,
            "global_step": r.global_step, "metrics": r.metrics}
