"""Runs: training runs with status; for one run a progress bar, a live loss curve, the log tail, cancel/resume."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.durations import eta_line
from core.errors import PermissionDenied
from core.markdown import code_span
from db.models import utcnow
from training.runs import (
    RunError,
    can_resume,
    cancel_run,
    get_run,
    is_active,
    list_runs,
    readable_log,
    resume_run,
    run_checkpoints,
    run_metrics,
)

user = page_user(__file__)
eng = engine()
st.title("Training runs")

runs = list_runs(eng, limit=100)
if not runs:
    st.info("No training runs yet. Start one on the Export & train page or with `rational train`.")
    st.stop()
st.dataframe([{"id": r.id, "name": r.name, "method": r.method, "base model": r.base_model, "export": r.export_name,
               "status": r.status, "step": f"{r.global_step}/{r.max_steps or '?'}", "created": r.created_at}
              for r in runs], hide_index=True, width="stretch")

run_id = st.selectbox("Run", [r.id for r in runs], format_func=lambda i: next(f"{r.id} · {r.name} · {r.status}"
                                                                              for r in runs if r.id == i))


@st.fragment(run_every=2 if is_active(get_run(eng, run_id)) else None)
def run_detail() -> None:
    r = get_run(eng, run_id)
    elapsed = ((r.finished_at or utcnow()) - r.started_at).total_seconds() if r.started_at else 0.0
    st.progress(min(1.0, r.global_step / r.max_steps) if r.max_steps else 0.0,
                text=f"{r.status} · step {eta_line(r.global_step, r.max_steps, elapsed)}")
    if r.error:
        st.error(plain(r.error))
    m = pd.DataFrame(run_metrics(eng, run_id))
    if not m.empty and m["loss"].notna().any():
        chart = alt.Chart(m.dropna(subset=["loss"])).mark_line(point=True).encode(
            x=alt.X("step:Q"), y=alt.Y("loss:Q"), color=alt.Color("kind:N", title="loss"),
            tooltip=["step", "kind", "loss", "learning_rate", "grad_norm", "tokens_per_s"])
        st.altair_chart(chart, width="stretch")
        last = m[m["kind"] == "train"].tail(1)
        if not last.empty and pd.notna(last["tokens_per_s"].iloc[0]):
            st.caption(f"{last['tokens_per_s'].iloc[0]:,.0f} tokens/s at step {int(last['step'].iloc[0])}")
    else:
        st.caption("No logged steps yet.")
    ckpts = run_checkpoints(eng, run_id)
    c1, c2 = st.columns(2)
    if is_active(r):
        with c1.popover("Cancel run…"):
            st.write(f"Stop run {r.id} at its next step? The last checkpoint is kept, so it can resume later.")
            if st.button("Yes, cancel the run", key=f"cancel_{r.id}", type="primary"):
                try:
                    cancel_run(eng, r.id, user_id=user.id)
                except (RunError, PermissionDenied, ValueError) as e:
                    st.error(plain(e))
                else:
                    st.toast(f"Cancel requested: run {r.id} stops at its next step.", icon=":material/cancel:")
                    st.rerun(scope="app")
    if can_resume(r) and ckpts:
        if c2.button(f"Resume from checkpoint {ckpts[-1].step}", key=f"resume_{r.id}"):
            try:
                resume_run(eng, r.id, created_by=user.id)
            except (RunError, PermissionDenied, ValueError) as e:
                st.error(plain(e))
            else:
                st.rerun(scope="app")
    elif can_resume(r):
        c2.caption("No checkpoint was saved before it stopped: start a new run on the Export & train page.")
    st.markdown("**Log tail**")
    st.code(readable_log(r.log_tail)[-4000:] or "(empty)", language="text")
    st.markdown(f"**Export** {code_span(r.export_name)} · **base model** {code_span(r.base_model)} · **preset** "
                f"{code_span(r.preset)}")
    if r.adapter_path:
        st.markdown("**Adapter**")
        st.code(r.adapter_path, language="text")
    if ckpts:
        st.caption("Checkpoints: " + ", ".join(str(c.step) for c in ckpts))
    with st.expander("Config"):
        st.json(r.config)
    if is_active(r) and not st.session_state.get(f"live_{run_id}"):
        st.session_state[f"live_{run_id}"] = True
    elif not is_active(r) and st.session_state.pop(f"live_{run_id}", None):
        st.rerun(scope="app")  # it just ended: redraw without polling


run_detail()
