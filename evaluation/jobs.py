"""Job kind "evaluate": the worker runs one eval run (resumable: answered prompts are kept and skipped)."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine

from curation.auth import check
from db.jobs import JobContext, enqueue, register_job_kind
from db.models import EvalRun, Job, User
from evaluation.runs import execute_eval_run


@register_job_kind("evaluate", resumable=True, description="answer an eval suite, judge, compute metrics")
def evaluate(ctx: JobContext, run_id: int) -> dict:
    def progress(done, total, msg):
        ctx.progress(done, total, msg)

    run = execute_eval_run(ctx.engine, int(run_id), progress=progress)
    judge = {f"{r['metric']}": round(r["rate"], 4) for r in run.metrics.get("rows", [])
             if r["level"] == "suite"}
    ctx.log(f"eval run {run.id}: {run.metrics.get('outputs')} outputs; {judge}")
    return {"eval_run_id": run.id, "outputs": run.metrics.get("outputs"), "metrics": judge}


def enqueue_eval(engine: Engine, user: User | int | None, run_id: int, *, worker_label: str | None = None) -> Job:
    """Queue the run for the worker and link the job to it; with `worker_label`, for workers with that label."""
    me = check(engine, user, "evaluate")
    job = enqueue(engine, "evaluate", {"run_id": run_id}, created_by=me.id if me else None,
                  requires_label=worker_label)
    with engine.begin() as conn:
        conn.execute(update(EvalRun).where(EvalRun.id == run_id).values(job_id=job.id))
    return job
