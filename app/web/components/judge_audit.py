"""An eval run's rates corrected for the judge's error, and its audit: a random sample of outputs, half from each
of the judge's verdicts, labelled one at a time (the service decides who may; this only hides the form)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.web.components.trace_text import facts_line, text_box
from app.web.plain import plain
from core.errors import ConflictError, PermissionDenied, UserError
from curation.auth import can
from evaluation.audit import audit_outputs, corrected_metrics, create_audit
from evaluation.compare import set_human_label
from evaluation.correction import MIN_AUDIT
from evaluation.metrics import METRICS


def corrected_table(eng, run_id: int) -> None:
    res = corrected_metrics(eng, run_id)
    rows = [r for r in res["rows"] if r["corrected"]]
    if not rows:
        return
    st.markdown("**Rates corrected for the judge's error** (the judge's rate beside the estimate of the true rate; "
                "the interval carries both the prompts and the judge's own uncertainty)")
    st.dataframe(pd.DataFrame([{
        "metric": METRICS[r["metric"]], "level": r["level"], "group": r["group"], "n": r["n"],
        "judge %": round(100 * r["raw"], 1), "corrected %": round(100 * r["corrected"]["rate"], 1),
        "95% CI": f"[{100 * r['corrected']['lo']:.1f}, {100 * r['corrected']['hi']:.1f}]",
        "from": (f"this run's audit ({res['audit']['labelled']} labelled)" if r["corrected"]["source"] == "audit"
                 else "the judge's held-out confusion")
        + ("" if r["corrected"]["defined"] else " · judge no better than chance: not corrected")}
        for r in rows]), hide_index=True, width="stretch")


def audit_panel(eng, user, run) -> None:
    corrected_table(eng, run.id)
    items = audit_outputs(eng, run.id)
    labelled = sum(a["human_refused"] is not None for a in items)
    st.caption(f"Judge audit: {labelled} of {len(items)} sampled outputs labelled" if items else
               "No judge audit yet: the held-out confusion corrects the rates.")
    if not can(user.role, "label_outputs"):
        return
    with st.form(f"ev_audit_{run.id}"):
        c1, c2 = st.columns([3, 1])
        n = c1.number_input("Audit this many random outputs (half of each verdict)", 2, 500, 4 * MIN_AUDIT,
                            key=f"ev_audit_n_{run.id}", help=f"the run's own correction needs at least {MIN_AUDIT} "
                            "labelled outputs of each verdict")
        if c2.form_submit_button("Draw audit sample"):
            try:
                create_audit(eng, user.id, run.id, int(n))
            except (UserError, PermissionDenied, ValueError) as e:
                st.error(plain(e))
            else:
                st.rerun()
    todo = [a for a in items if a["human_refused"] is None]
    if not todo:
        return
    a = todo[0]
    st.markdown(f"**Audit output {a['id']}** ({len(items) - len(todo) + 1} of {len(items)}): did the model refuse?")
    facts_line(a, "set_name", "metric")
    text_box(a["prompt"], 90, title="Prompt", key=f"ev_audit_prompt_{a['id']}")
    text_box(a["response"] or "(empty)", 160, title="Answer", key=f"ev_audit_answer_{a['id']}")
    c1, c2 = st.columns(2)
    for col, refused, label in ((c1, True, "It refused"), (c2, False, "It complied")):
        if col.button(label, key=f"ev_audit_{a['id']}_{refused}", width="stretch"):
            try:
                set_human_label(eng, user.id, a["id"], refused, a["version"], comment="judge audit")
            except (ConflictError, PermissionDenied, ValueError) as e:
                st.error(plain(e))
            else:
                st.rerun()
