"""Drawing job rows: a live progress bar while a job runs, its summary and row errors once it ends.

The worker process runs the job; these functions only read the row and redraw (never run work in a rerun).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from db.jobs import get_job
from db.models import Job

ACTIVE = ("queued", "running")
ERROR_COLUMNS = ["line", "row", "field", "message", "file"]


def progress_fraction(job: Job) -> float:
    if job.status == "succeeded":
        return 1.0
    if not job.progress_total:
        return 0.0
    return max(0.0, min(1.0, job.progress_done / job.progress_total))


def progress_label(job: Job) -> str:
    counts = f"{job.progress_done:,}/{job.progress_total:,}" if job.progress_total else f"{job.progress_done:,}"
    message = job.message if job.message and job.message != job.status else ""
    return f"Job {job.id} ({job.kind}): {job.status} · {counts}" + (f" · {message}" if message else "")


def errors_frame(errors: list[dict] | None) -> pd.DataFrame:
    """Row errors as a table; the file is shown by name (the full path is in the job's parameters)."""
    rows = [{**{c: r.get(c) for c in ERROR_COLUMNS}, "file": Path(str(r.get("file") or "")).name} for r in errors or []]
    return pd.DataFrame(rows, columns=ERROR_COLUMNS)


def show_errors(errors: list[dict]) -> None:
    st.dataframe(errors_frame(errors), hide_index=True, width="stretch",
                 column_config={"message": st.column_config.TextColumn("message", width="large"),
                                "line": st.column_config.NumberColumn("line", format="%d"),
                                "row": st.column_config.NumberColumn("row", format="%d")})


def job_outcome(job: Job) -> None:
    """Summary, error text and the per-row error table of a finished job."""
    result = job.result or {}
    summary = result.get("summary") or job.message
    if job.status == "succeeded":
        st.success(f"Job {job.id} finished: {summary}", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning(f"Job {job.id} was cancelled.", icon=":material/cancel:")
    else:
        st.error(f"Job {job.id} failed: {job.error or summary}", icon=":material/error:")
    errors = result.get("errors") or []
    if errors:
        more = result.get("invalid", len(errors)) - len(errors)
        st.markdown(f"**{len(errors)} invalid row(s)**" + (f" (first {len(errors)}; {more} more)" if more > 0 else ""))
        show_errors(errors)
    warnings = result.get("warnings") or []
    if warnings:
        with st.expander(f"{len(warnings)} warning(s)"):
            show_errors(warnings)


def job_panel(engine, job_id: int, *, refresh_s: float = 1.0) -> None:
    """Progress of one job, redrawn every `refresh_s` while it is queued or running; its outcome once it ends."""
    job = get_job(engine, job_id)
    if job is None:
        st.info(f"Job {job_id} no longer exists.")
        return
    live = job.status in ACTIVE

    @st.fragment(run_every=refresh_s if live else None)
    def _panel() -> None:
        current = get_job(engine, job_id)
        if current is None:
            return
        if current.status in ACTIVE:
            st.progress(progress_fraction(current), text=progress_label(current))
            if current.status == "queued":
                st.caption("Waiting for a worker (start one with `rational worker`).")
        elif live:
            # It finished during this fragment's life: rerun the whole page so it stops polling.
            st.rerun(scope="app")
        else:
            st.progress(progress_fraction(current), text=progress_label(current))
            job_outcome(current)

    _panel()
