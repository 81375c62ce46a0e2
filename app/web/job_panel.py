"""Drawing job rows: a live progress bar while a job runs, its summary and row errors once it ends.

The worker process runs the job; these functions only read the row and redraw (never run work in a rerun).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.web.plain import plain
from core.durations import clock, eta_line
from db.jobs import get_job, waiting_reason
from db.models import Job, utcnow

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
    if job.status == "running" and job.started_at is not None:
        counts = eta_line(job.progress_done, job.progress_total, (utcnow() - job.started_at).total_seconds())
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
        st.success(f"Job {job.id} finished: {plain(summary)}", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning(f"Job {job.id} was cancelled.", icon=":material/cancel:")
    else:
        st.error(f"Job {job.id} failed: {plain(job.error or summary)}", icon=":material/error:")
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
                st.caption(waiting_reason(engine, current))
        elif live:
            # It finished during this fragment's life: rerun the whole page so it stops polling.
            st.rerun(scope="app")
        else:
            st.progress(progress_fraction(current), text=progress_label(current))
            job_outcome(current)

    _panel()


def yield_frame(summary: dict) -> pd.DataFrame:
    rows = []
    for b, y in sorted((summary.get("yield") or {}).items()):
        n = y["samples"] or 1
        rows.append({"behaviour": b, "samples": y["samples"], "parsed": y["parsed"], "matches expected": y["matches"],
                     "usable": y["usable"], "usable %": round(100 * y["usable"] / n, 1)})
    return pd.DataFrame(rows, columns=["behaviour", "samples", "parsed", "matches expected", "usable", "usable %"])


def run_panel(engine, run_id: int, *, refresh_s: float = 2.0) -> None:
    """A generation run, live: samples as they finish with tokens/s and ETA, its yield per behaviour, the newest
    traces, and why samples were rejected."""
    from curation.generation.runs import get_run
    from curation.generation.yields import latest_traces, rejected_samples

    run = get_run(engine, run_id)
    if run is None:
        st.info(f"Generation run {run_id} no longer exists.")
        return
    live = run.status in ("queued", "running")

    @st.fragment(run_every=refresh_s if live else None)
    def _panel() -> None:
        r = get_run(engine, run_id)
        s = r.summary or {}
        total, done = s.get("total") or 0, s.get("done") or 0
        eta = s.get("eta_s")
        label = (f"Run {r.id}: {r.status} · {done:,}/{total:,} samples · {s.get('tokens_per_s', 0):.0f} tok/s · "
                 f"elapsed {_clock(s.get('elapsed_s'))} · ETA {_clock(eta) if eta is not None else '-'}")
        st.progress(min(1.0, done / total) if total else 0.0, text=label)
        if r.status == "queued":
            st.caption("Queued: a worker picks it up (`rational worker`).")
        if (r.params or {}).get("engine_choice"):
            st.caption("Engine (auto): " + plain(r.params["engine_choice"]))
        st.dataframe(yield_frame(s), hide_index=True, width="stretch")
        newest = latest_traces(engine, run_id, limit=10)
        if newest:
            st.caption("Newest traces (they appear as each sample finishes)")
            st.dataframe(pd.DataFrame(newest)[["trace_id", "behavior", "usable", "why", "prompt", "reasoning",
                                               "response"]], hide_index=True, width="stretch")
        rejected = s.get("rejected") or {}
        if rejected:
            with st.expander(f"Why samples were rejected ({sum(rejected.values())} reasons)"):
                st.dataframe(pd.DataFrame([{"reason": k, "samples": v} for k, v in rejected.items()]),
                             hide_index=True, width="stretch")
                st.dataframe(pd.DataFrame(rejected_samples(engine, run_id, limit=50)), hide_index=True,
                             width="stretch")
        if live and r.status not in ("queued", "running"):
            st.rerun(scope="app")  # it just ended: redraw once without polling

    _panel()


def _clock(seconds) -> str:
    return "-" if seconds is None else clock(seconds)
