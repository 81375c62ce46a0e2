"""Job kinds for generation, mutation and auto-labelling. Importing this module registers them with db.jobs."""
from __future__ import annotations

import os
import threading
import traceback
from typing import Optional

from sqlalchemy import update
from sqlalchemy.engine import Engine

from db import jobs as jobrows
from db.engine import write_engine
from db.jobs import JobCancelled, JobContext, register_job_kind
from db.models import Job, utcnow


def _progress(ctx: JobContext):
    return lambda done, total, msg: ctx.progress(done, total, msg)


@register_job_kind("generate", resumable=True, description="Generate self-check reasoning traces")
def run_generate(ctx: JobContext, *, run_id: int, **_ignored) -> dict:
    from curation.generation import run_generation

    return run_generation(ctx.engine, run_id, progress=_progress(ctx), log=ctx.log)


@register_job_kind("mutate", resumable=True,  # re-runs skip what is stored
                   description="Rewrite refuse prompts into jailbreak styles")
def run_mutate(ctx: JobContext, **params) -> dict:
    from curation.mutations import MutationConfig, run_mutations

    return run_mutations(ctx.engine, MutationConfig.from_dict(params), progress=_progress(ctx), log=ctx.log)


@register_job_kind("label", resumable=True, description="Auto-label traces (string match, optional LLM judge)")
def run_label(ctx: JobContext, *, set_name: Optional[str] = None, run_id: Optional[int] = None,
              judge: str = "strmatch", model: Optional[str] = None, backend: str = "transformers",
              backend_options: Optional[dict] = None) -> dict:
    from curation.judges import label_traces

    be = None
    if judge == "llm":
        from curation.backends import make_backend
        from curation.models import resolve_model

        be = make_backend(backend, resolve_model(model) if backend != "openai" else model, **(backend_options or {}))
    try:
        counts = label_traces(ctx.engine, set_name=set_name, run_id=run_id, judge=judge, backend=be,
                              progress=_progress(ctx))
    finally:
        if be is not None:
            be.close()
    ctx.log(f"labelled {counts['traces']} traces: {counts['auto_approve_candidates']} auto-approve candidates, "
            f"{counts['inconsistent']} inconsistent")
    return counts


def run_job_here(engine: Engine, job_id: int, heartbeat_s: float = 5.0) -> Job:
    """Run one queued job in this process (the CLI's --wait), with the worker's bookkeeping: claim, heartbeat,
    finish. A job another worker already claimed is left alone."""
    now = utcnow()
    with write_engine(engine).begin() as conn:
        res = conn.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
            status="running", worker_id=f"cli:{os.getpid()}", started_at=now, heartbeat_at=now,
            attempts=Job.attempts + 1, message="started"))
    if res.rowcount != 1:
        raise RuntimeError(f"job {job_id} is not queued (another worker may have claimed it)")
    job = jobrows.get_job(engine, job_id)
    ctx = JobContext(engine, job)
    stop = threading.Event()

    def beat():
        while not stop.wait(heartbeat_s):
            try:
                jobrows.heartbeat(engine, job_id)
            except Exception:
                pass

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        result = jobrows.JOB_KINDS[job.kind].handler(ctx, **ctx.params)
        jobrows.finish(engine, job_id, status="succeeded", result=result)
    except JobCancelled:
        jobrows.finish(engine, job_id, status="cancelled", error="cancelled by request")
    except Exception as e:
        ctx.log(traceback.format_exc()[-4000:])
        jobrows.finish(engine, job_id, status="failed", error=f"{type(e).__name__}: {e}"[:4000])
    finally:
        stop.set()
        t.join(timeout=heartbeat_s + 1)
    return jobrows.get_job(engine, job_id)


def enqueue_generation(engine: Engine, run_id: int, *, created_by: int | None = None) -> Job:
    """Queue a run's generation and link the job to the run."""
    from sqlmodel import Session

    from db.models import GenerationRun

    job = jobrows.enqueue(engine, "generate", {"run_id": run_id}, created_by=created_by)
    with Session(engine) as s:
        run = s.get(GenerationRun, run_id)
        run.job_id = job.id
        s.add(run)
        s.commit()
    return job


def enqueue_mutation(engine: Engine, config, *, created_by: int | None = None) -> Job:
    config.validate()
    return jobrows.enqueue(engine, "mutate", config.to_dict(), created_by=created_by)


def enqueue_label(engine: Engine, *, set_name: Optional[str] = None, run_id: Optional[int] = None,
                  judge: str = "strmatch", model: Optional[str] = None, backend: str = "transformers",
                  backend_options: Optional[dict] = None, created_by: int | None = None) -> Job:
    if judge not in ("strmatch", "llm"):
        raise ValueError(f"judge '{judge}' is not one of strmatch, llm")
    return jobrows.enqueue(engine, "label", {"set_name": set_name, "run_id": run_id, "judge": judge, "model": model,
                                             "backend": backend, "backend_options": backend_options or {}},
                           created_by=created_by)
