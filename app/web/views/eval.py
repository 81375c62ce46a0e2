"""Evaluate: start an eval run (model + optional adapter on a safety suite) as a worker job; list runs; see one
run's identity and metrics (judge and human-corrected, with 95% CIs)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.web.components.judge_audit import audit_panel
from app.web.job_panel import job_panel
from app.web.login import page_user
from app.web.navigation import link_to
from app.web.plain import plain
from app.web.state import engine
from core.errors import PermissionDenied, UserError
from core.vocabulary import DEFAULT_MODEL
from curation.judges.registry import DEFAULT_JUDGE, OFFLINE_JUDGES
from evaluation.jobs import enqueue_eval
from evaluation.judging import judge_line
from evaluation.metrics import METRICS, SMALL_N
from evaluation.rescore import rescore
from evaluation.runs import (
    EvalError,
    EvalSpec,
    adapter_choices,
    consistency_by_set,
    create_eval_run,
    get_run,
    run_identity,
    run_metrics,
    run_summaries,
)
from evaluation.suites import SUITES, missing_builtin_sets

eng = engine()
user = page_user(__file__)
st.title("Evaluate")
st.caption("An eval run answers a suite's held-out prompts with a model (and optionally a LoRA adapter), judges "
           "every answer and computes failure rates with Wilson 95% intervals. The worker (`rational worker`) runs it.")


def new_run_form() -> None:
    # Open on a first visit with no runs; then the same every rerun, so a refresh never folds a half-filled form.
    opened = st.session_state.setdefault("ev_form_open", not run_summaries(eng, limit=1))
    with st.expander("New eval run", expanded=opened):
        suite = st.selectbox("Suite", list(SUITES), key="ev_suite", format_func=lambda n: f"{n} (v{SUITES[n].version})")
        st.caption(SUITES[suite].description)
        for entry in SUITES[suite].sets:
            if entry.note:
                st.warning(f"{entry.label}: {entry.note}", icon=":material/warning:")
        missing = missing_builtin_sets(eng, SUITES[suite])
        if missing:
            st.info(f"Starting this run first imports the built-in set{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(missing)} (its eval split), which this database does not have yet.",
                    icon=":material/download:")
        source = st.radio("Adapter", ["none (base model)", "adapter folder", "training run"], horizontal=True,
                          key="ev_adapter_source")
        with st.form("ev_new"):
            model = st.text_input("Model (folder or name)", value=DEFAULT_MODEL, key="ev_model")
            adapter, training_run = None, None
            if source == "adapter folder":
                adapter = st.text_input("Adapter folder", key="ev_adapter") or None
            elif source == "training run":
                runs = adapter_choices(eng)
                pick = st.selectbox("Training run", runs, format_func=lambda r: r["label"], key="ev_train_run")
                training_run = pick["id"] if pick else None
            c1, c2, c3, c4 = st.columns(4)
            limit = c1.number_input("Prompts per set (0 = all)", min_value=0, value=40, step=10, key="ev_limit")
            max_tokens = c2.number_input("Max new tokens", min_value=8, max_value=4096, value=128, key="ev_max")
            temperature = c3.number_input("Temperature (0 = greedy)", min_value=0.0, max_value=2.0, value=0.0,
                                          key="ev_temp")
            backend = c4.selectbox("Backend", ["transformers", "vllm", "openai"], key="ev_backend")
            judge = st.selectbox("Refusal judge", OFFLINE_JUDGES, key="ev_judge",
                                 format_func=lambda n: f"{n} (default)" if n == DEFAULT_JUDGE else n,
                                 help="learned: n-grams + rules, trained on labelled replies and your reviewers' "
                                      "labels; rule: reads the whole reply; prefix/gcg: the literature's string "
                                      "matches. Measured agreement: Agreement page or `rational judge list`.")
            if st.form_submit_button("Start eval run", type="primary"):
                spec = EvalSpec(suite=suite, model=model.strip() or None, adapter=adapter, training_run_id=training_run,
                                backend=backend, limit=int(limit) or None, max_tokens=int(max_tokens),
                                temperature=float(temperature), judge=judge)
                try:
                    run = create_eval_run(eng, spec, created_by=user.id)
                except (EvalError, ValueError) as e:
                    st.error(plain(e))
                else:
                    job = enqueue_eval(eng, user.id, run.id)
                    st.session_state["ev_job"] = job.id
                    st.session_state["ev_run"] = run.id
        if st.session_state.get("ev_job"):
            job_panel(eng, st.session_state["ev_job"])


def runs_table() -> None:
    rows = run_summaries(eng)
    if not rows:
        st.info("No eval runs yet.")
        return
    df = pd.DataFrame(rows)
    for m in METRICS:
        if m in df:
            df[m] = (df[m] * 100).round(1)
    st.dataframe(df.rename(columns={m: f"{label} %" for m, label in METRICS.items()}), hide_index=True,
                 width="stretch")


def run_details() -> None:
    rows = run_summaries(eng)
    if not rows:
        return
    st.subheader("Run details")
    ids = [r["id"] for r in rows]
    default = ids.index(st.session_state["ev_run"]) if st.session_state.get("ev_run") in ids else 0
    run_id = st.selectbox("Eval run", ids, index=default, key="ev_detail",
                          format_func=lambda i: next(f"#{r['id']} {r['name']} [{r['status']}]" for r in rows
                                                     if r["id"] == i))
    run = get_run(eng, run_id)
    ident = run_identity(run)
    for set_name, n in ident["train_overlap"].items():
        st.warning(f"{n} prompts of '{plain(set_name)}' are in the train split: this set is used for both training and "
                   "evaluation.", icon=":material/warning:")
    if run.error:
        st.error(plain(run.error))
    if run.status == "succeeded":
        link_to(user.role, "compare.py", "Next: compare this run with another side by side")
    st.caption(f"Judged by {judge_line(run.judges)}.")
    with st.expander("Identity (what makes two runs comparable)"):
        st.json(ident)
    rescore_form(run)
    source = st.radio("Verdicts", ["judge", "human"], horizontal=True, key="ev_source",
                      format_func=lambda s: "judge" if s == "judge" else "human-corrected")
    metrics = [m for m in run_metrics(eng, run.id) if m["source"] == source]
    if not metrics:
        st.info("No outputs yet.")
        return
    df = pd.DataFrame([{"metric": METRICS[m["metric"]], "level": m["level"], "group": m["group"], "n": m["n"],
                        "failures": m["k"], "rate %": round(100 * m["rate"], 1),
                        "95% CI": f"[{100 * m['lo']:.1f}, {100 * m['hi']:.1f}]",
                        "note": f"small n (< {SMALL_N}): a hint, not a finding" if m["n"] < SMALL_N else ""}
                       for m in metrics])
    st.dataframe(df, hide_index=True, width="stretch")
    audit_panel(eng, user, run)
    consistency_panel(run.id)


def consistency_panel(run_id: int) -> None:
    """Per set: does the answer do what the reasoning concluded (judge verdicts)?"""
    counts = consistency_by_set(eng, run_id)
    if not any(c["concluded"] for c in counts.values()):
        return
    st.markdown("**Does the answer follow the reasoning?** The reasoning's conclusion (help / not help, from its "
                "last sentences) against the judged answer.")
    st.dataframe(pd.DataFrame([{
        "set": name, "outputs": c["outputs"], "reasoning concludes": c["concluded"],
        "consistent %": round(100 * c["consistent"] / c["concluded"], 1) if c["concluded"] else None,
        "reasoned help, refused": c["help_but_refused"], "reasoned refuse, complied": c["refuse_but_complied"]}
        for name, c in sorted(counts.items())]), hide_index=True, width="stretch")


def rescore_form(run) -> None:
    """Re-judge the stored outputs with another judge: no generation, people's labels stay."""
    with st.form(f"ev_rescore_{run.id}"):
        c1, c2 = st.columns([3, 1])
        judge = c1.selectbox("Re-score with judge", OFFLINE_JUDGES, key=f"ev_rescore_judge_{run.id}")
        if c2.form_submit_button("Re-score"):
            try:
                res = rescore(eng, user.id, run.id, judge)
            except (UserError, PermissionDenied) as e:
                st.error(plain(e))
            else:
                st.success(f"{res['outputs']} outputs re-judged by {res['judge']}: {res['changed']} verdicts changed.")


new_run_form()
runs_table()
run_details()
