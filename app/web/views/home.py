"""Home: what is in the database (prompts by set, behaviour and split) and what the worker is doing."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.vocabulary import JOB_STATUSES
from db.crud import prompt_counts
from db.engine import artifact_root
from db.jobs import job_status_counts

user = page_user(__file__)
eng = engine()
st.title("Rational Studio")
st.caption("Reasoning-enhanced safety fine-tuning: prompts → self-check traces → review → train → compare.")

counts = pd.DataFrame(prompt_counts(eng), columns=["set", "expected_behavior", "split", "n"])
jobs = job_status_counts(eng)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Prompts", f"{int(counts['n'].sum()):,}")
c2.metric("Prompt sets", counts["set"].nunique())
c3.metric("Jobs running", jobs.get("running", 0))
c4.metric("Jobs queued", jobs.get("queued", 0))

if st.button("Quick start: run the RATIONAL loop", key="loop_quick_start",
             help="Prompts → self-check traces → auto-filter → LoRA SFT → before/after eval on the embedded "
                  "model (a small run; `rational loop` for the full one)."):
    from core.errors import PermissionDenied
    from workflows.jobs import enqueue_loop

    try:
        st.session_state["loop_job"] = enqueue_loop(eng, user.id).id
    except (PermissionDenied, ValueError) as e:
        st.error(plain(e))
if st.session_state.get("loop_job"):
    from app.web.job_panel import job_panel
    from db.jobs import get_job

    job_panel(eng, st.session_state["loop_job"])
    job = get_job(eng, st.session_state["loop_job"])
    stored = (job.result or {}).get("report") if job is not None else None
    report = artifact_root() / stored if stored else None  # relative to the artifact root (absolute stays)
    if report and report.is_file():
        with st.expander(f"Report ({report})"):
            st.markdown(report.read_text(encoding="utf-8"))  # tables only; markdown, never raw HTML

st.subheader("Prompts")
if counts.empty:
    st.info("No prompts yet. Import a file or install a built-in set on the Import page.")
else:
    by_set = (counts.pivot_table(index="set", columns="expected_behavior", values="n", aggfunc="sum", fill_value=0)
              .astype(int))
    by_set["total"] = by_set.sum(axis=1)
    chart = (alt.Chart(counts).mark_bar()
             .encode(x=alt.X("sum(n):Q", title="prompts", axis=alt.Axis(format="d", tickMinStep=1)), y=alt.Y("set:N", sort="-x", title=None),
                     color=alt.Color("expected_behavior:N", title="expected behaviour",
                                     scale=alt.Scale(domain=["refuse", "comply", "partial"],
                                                     range=["#d62728", "#2ca02c", "#ff7f0e"])),
                     tooltip=["set", "expected_behavior", "split", "n"])
             .properties(height=max(120, 28 * counts["set"].nunique())))
    st.altair_chart(chart, width="stretch")
    left, mid, right = st.columns([3, 2, 2])
    with left:
        st.markdown("**By set and expected behaviour**")
        st.dataframe(by_set.reset_index(), hide_index=True, width="stretch")
    with mid:
        st.markdown("**By expected behaviour**")
        st.dataframe(counts.groupby("expected_behavior", as_index=False)["n"].sum()
                     .rename(columns={"expected_behavior": "behaviour"}), hide_index=True, width="stretch")
    with right:
        st.markdown("**By split**")
        st.dataframe(counts.groupby("split", as_index=False)["n"].sum(), hide_index=True, width="stretch")

st.subheader("Jobs")
st.columns([1, 2])[0].dataframe(
    pd.DataFrame({"status": list(JOB_STATUSES), "jobs": [jobs.get(s, 0) for s in JOB_STATUSES]}),
    hide_index=True, width="stretch")
