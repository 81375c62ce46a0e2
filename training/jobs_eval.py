"""Job kind "evaluate": the worker runs one eval run (resumable: answered prompts are kept and skipped)."""
from __future__ import annotations

from db.jobs import JobContext, register_job_kind
from training.evaluation import execute_eval_run


@register_job_kind("evaluate", resumable=True, description="answer an eval suite, judge, compute metrics")
def evaluate(ctx: JobContext, run_id: int) -> dict:
    def progress(done, total, msg):
        ctx.progress(done, total, msg)

    run = execute_eval_run(ctx.engine, int(run_id), progress=progress)
    judge = {f"{r['metric']}": round(r["rate"], 4) for r in run.metrics.get("rows", [])
             if r["level"] == "suite"}
    ctx.log(f"eval run {run.id}: {run.metrics.get('outputs')} outputs; {judge}")
    return {"eval_run_id": run.id, "outputs": run.metrics.get("outputs"), "metrics": judge}


def enqueue_eval(engine, run_id: int, *, created_by: int | None = None):
    """Queue the run for the worker and link the job to it."""
    from sqlalchemy import update

    from db.jobs import enqueue
    from db.models import EvalRun

    job = enqueue(engine, "evaluate", {"run_id": run_id}, created_by=created_by)
    with engine.begin() as conn:
        conn.execute(update(EvalRun).where(EvalRun.id == run_id).values(job_id=job.id))
    return job
