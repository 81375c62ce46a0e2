"""Jobs: recent background jobs with status, progress, duration, the worker that holds each and its last heartbeat;
queued or running ones can be cancelled."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.web.job_panel import ACTIVE, job_outcome, progress_fraction
from app.web.login import page_user
from app.web.state import engine
from core.durations import clock
from curation.job_cancel import cancel_job
from db.crud import list_jobs
from db.jobs import get_job
from db.models import utcnow

LIMIT = 50

user = page_user(__file__)
eng = engine()
st.title("Jobs")
st.caption("Jobs run in worker processes (`rational worker`, one or more, here or on other machines); this page "
           "only reads and cancels them.")


COLUMNS = ["id", "kind", "status", "progress", "done", "duration", "worker", "heartbeat", "needs label", "message",
           "error", "created", "finished"]


def job_table(jobs) -> pd.DataFrame:
    now = utcnow()
    return pd.DataFrame([{
        "id": j.id, "kind": j.kind, "status": j.status, "progress": progress_fraction(j),
        "done": f"{j.progress_done:,}/{j.progress_total:,}" if j.progress_total else f"{j.progress_done:,}",
        "duration": clock(((j.finished_at or now) - j.started_at).total_seconds()) if j.started_at else "",
        "worker": j.worker_id or "",
        "heartbeat": f"{clock((now - j.heartbeat_at).total_seconds())} ago"
        if j.heartbeat_at and j.status in ACTIVE else "",
        "needs label": j.requires_label or "",
        "message": j.message, "error": (j.error or "")[:300], "created": j.created_at, "finished": j.finished_at,
    } for j in jobs], columns=COLUMNS)


def jobs_list() -> None:
    jobs = list_jobs(eng, limit=LIMIT)
    active = [j for j in jobs if j.status in ACTIVE]

    @st.fragment(run_every=2 if active else None)
    def _list() -> None:
        current = list_jobs(eng, limit=LIMIT)
        if not current:
            st.info("No jobs yet.")
            return
        st.dataframe(job_table(current), hide_index=True, width="stretch",
                     column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0,
                                                                                 max_value=1.0),
                                    "id": st.column_config.NumberColumn("id", format="%d"),
                                    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
                                    "finished": st.column_config.DatetimeColumn("finished",
                                                                                format="YYYY-MM-DD HH:mm:ss")})
        running = [j for j in current if j.status in ACTIVE]
        for j in running:
            c1, c2 = st.columns([4, 1])
            c1.markdown(f"Job **{j.id}** `{j.kind}` is {j.status}"
                        + (" (cancel requested)" if j.cancel_requested else ""))
            if c2.button("Cancel", key=f"cancel_{j.id}", disabled=j.cancel_requested):
                try:
                    cancel_job(eng, user.id, j.id)
                except Exception as e:  # PermissionDenied: one line, not a traceback
                    st.error(f"{type(e).__name__}: {e}")
                else:
                    st.rerun(scope="app")
        if bool(running) != bool(active):
            st.rerun(scope="app")  # the set of live jobs changed: redraw with (or without) polling

    _list()


def job_details() -> None:
    jobs = list_jobs(eng, limit=LIMIT)
    if not jobs:
        return
    st.subheader("Details")
    job_id = st.selectbox("Job", [j.id for j in jobs], key="jobs_detail_id",
                          format_func=lambda i: next(f"{j.id} · {j.kind} · {j.status}" for j in jobs if j.id == i))
    job = get_job(eng, job_id)
    if job is None:
        return
    with st.expander("Parameters"):
        st.json(job.params or {})
    if job.status not in ACTIVE:
        job_outcome(job)
    if job.log_tail:
        st.markdown("**Log**")
        st.code(job.log_tail, language=None)


jobs_list()
job_details()
