"""Home: where the work stands at each stage (prompts, traces, review, training, evaluation), the next step as a
link, the quick-start loop, prompts by set and the jobs."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.navigation import link_to
from app.web.plain import plain
from app.web.state import engine
from core.vocabulary import JOB_STATUSES
from db.crud import prompt_counts, workflow_counts
from db.engine import artifact_root
from db.jobs import job_status_counts

user = page_user(__file__)
eng = engine()
st.title("Rational Studio")
st.caption("Reasoning-enhanced safety fine-tuning: prompts → self-check traces → review → train → compare.")

counts = pd.DataFrame(prompt_counts(eng), columns=["set", "expected_behavior", "split", "n"])
jobs = job_status_counts(eng)

stage = workflow_counts(eng)
TRACE_COLOURS = {"pending": "#9aa5b1", "in_review": "#2f6fdf", "needs_adjudication": "#ff7f0e",
                 "approved": "#2ca02c", "rejected": "#d62728"}


def total(name: str, *keys: str) -> int:
    counts = stage[name]
    return sum(counts.get(k, 0) for k in keys) if keys else sum(counts.values())


def next_step() -> tuple[str, str, str]:
    """(what to do, the view that does it, link label): the first stage of the workflow that is empty."""
    if not total("prompts"):
        return "Start by importing prompts, or install a built-in set.", "import_prompts.py", "Import prompts"
    if not total("traces"):
        return "Generate self-check traces for your prompts.", "generate.py", "Generate traces"
    if total("traces", "pending", "in_review") and not total("queues", "active"):
        return "Put the new traces in a review queue for your annotators.", "queues.py", "Create a queue"
    if total("traces", "needs_adjudication"):
        n = total("traces", "needs_adjudication")
        return (f"{n:,} trace{' waits' if n == 1 else 's wait'} for a reviewer's decision.",
                "adjudication.py", "Adjudicate")
    if total("traces", "pending", "in_review"):
        n = total("traces", "pending", "in_review")
        return f"{n:,} trace{' is' if n == 1 else 's are'} still open in review.", "review.py", "Review"
    if not total("training_runs", "succeeded"):
        return "Export the approved traces and train an adapter.", "export_train.py", "Export & train"
    if not total("eval_runs", "succeeded"):
        return "Evaluate the trained adapter against the base model.", "eval.py", "Evaluate"
    return "Compare the base and the tuned model side by side.", "compare.py", "Compare"


cols = st.columns(6)
cols[0].metric("Prompts", f"{total('prompts'):,}", help=f"train {total('prompts', 'train'):,} · "
               f"eval {total('prompts', 'eval'):,}")
cols[1].metric("Traces", f"{total('traces'):,}", help=f"{total('generation_runs'):,} generation runs")
cols[2].metric("Open in review", f"{total('traces', 'pending', 'in_review'):,}",
               help=f"{total('queues', 'active')} active queues · "
                    f"{total('traces', 'needs_adjudication'):,} waiting for adjudication")
cols[3].metric("Approved", f"{total('traces', 'approved'):,}", help=f"rejected {total('traces', 'rejected'):,}")
cols[4].metric("Training runs", total("training_runs"),
               help=" · ".join(f"{k} {v}" for k, v in sorted(stage["training_runs"].items())) or "none yet")
cols[5].metric("Eval runs", total("eval_runs"),
               help=" · ".join(f"{k} {v}" for k, v in sorted(stage["eval_runs"].items())) or "none yet")
todo, view, label = next_step()
with st.container(border=True):
    st.markdown(f"**Next step:** {todo}")
    link_to(user.role, view, label)
if stage["traces"]:
    order = [s for s in ("pending", "in_review", "needs_adjudication", "approved", "rejected") if s in stage["traces"]]
    frame = pd.DataFrame({"status": order, "traces": [stage["traces"][s] for s in order]})
    st.altair_chart(alt.Chart(frame, title="Traces by status", height=40 * len(order) + 10).mark_bar().encode(
        x=alt.X("traces:Q", title=None, axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("status:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=200)),
        color=alt.Color("status:N", scale=alt.Scale(domain=list(TRACE_COLOURS), range=list(TRACE_COLOURS.values())),
                        legend=None),
        tooltip=["status", "traces"]), width="stretch")
st.caption(f"Jobs: {jobs.get('running', 0)} running · {jobs.get('queued', 0)} queued")

if st.button("Quick start: run the RATIONAL loop", key="loop_quick_start",
             help="The default loop, the same as `rational loop`, as a job: prompts → self-check traces → "
                  "auto-filter → LoRA SFT → before/after eval on the embedded model → report. Its stages show "
                  "below while it runs; the report opens here when it ends."):
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
