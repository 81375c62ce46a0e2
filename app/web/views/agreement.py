"""Agreement (reviewers, admins): Cohen's kappa per pair, Krippendorff's alpha, disagreement and confusion; the
refusal judges as annotators beside the people, and each judge version's measured agreement."""
from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.state import engine
from curation.judges.registry import judge_cards
from curation.review.agreement import LABELS, agreement
from curation.review.queues import all_queue_names

user = page_user(__file__)
eng = engine()
st.title("Agreement")
qs = all_queue_names(eng, user.id)
if not qs:
    st.info("No queues yet.")
    st.stop()
c1, c2 = st.columns(2)
qid = c1.selectbox("Queue", list(qs), format_func=qs.get)
label = c2.selectbox("Label", list(LABELS))
with st.spinner("Computing agreement over the queue's annotations…"):
    res = agreement(eng, user.id, qid, label)


def band_kappa(k: float | None) -> str:
    """Landis & Koch's reading of Cohen's κ ("—" where κ is undefined: too few shared items)."""
    if k is None or math.isnan(k):
        return "—"
    for top, name in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if k <= top:
            return name
    return "almost perfect"


def band_alpha(a: float | None) -> str:
    """Krippendorff's own thresholds for α."""
    if a is None:
        return "—"
    return "reliable" if a >= 0.8 else "tentative conclusions only" if a >= 0.667 else "unreliable"


m1, m2, m3 = st.columns(3)
m1.metric("Krippendorff's α", "—" if res["alpha"] is None else f"{res['alpha']:.3f}", help=band_alpha(res["alpha"]))
m2.metric("Disagreement rate", "—" if res["disagreement_rate"] is None else f"{res['disagreement_rate']:.1%}")
m3.metric("Items with ≥ 2 annotations", res["items_multi"])
st.caption("**α** (Krippendorff) measures agreement among all annotators beyond chance, missing labels allowed: "
           "≥ 0.80 reliable, 0.667–0.80 tentative conclusions only, below that unreliable. **κ** (Cohen) does the "
           "same for one pair: ≤ 0 poor, 0–0.20 slight, 0.21–0.40 fair, 0.41–0.60 moderate, 0.61–0.80 substantial, "
           "above 0.80 almost perfect (Landis & Koch).")
if res["pairs"]:
    st.subheader("Cohen's κ per pair")
    pairs = pd.DataFrame(res["pairs"])
    pairs["reading"] = pairs["kappa"].map(band_kappa)
    st.dataframe(pairs, hide_index=True, column_config={
        "a": "annotator", "b": "other annotator", "kappa": st.column_config.NumberColumn("κ", format="%.3f"),
        "agreement": st.column_config.NumberColumn("raw agreement", format="percent")})
    if len(res["annotators"]) > 2:
        km = pd.DataFrame(res["kappa_matrix"]).reset_index(names="annotator").melt(
            id_vars="annotator", var_name="other", value_name="kappa")
        st.altair_chart(alt.Chart(km, title="κ for every pair").mark_rect().encode(
            x=alt.X("other:N", title=None), y=alt.Y("annotator:N", title=None),
            color=alt.Color("kappa:Q", scale=alt.Scale(domain=[-1, 1], scheme="redyellowgreen"), title="κ"),
            tooltip=["annotator", "other", alt.Tooltip("kappa:Q", format=".3f")]), width="stretch")
    st.subheader("Confusion per pair")
    pair = st.selectbox("Pair", list(res["confusion"]))
    first, second = pair.split(" vs ", 1)
    cells = pd.DataFrame([{"first": x, "second": y, "items": n} for x, row in res["confusion"][pair].items()
                          for y, n in row.items()])
    size = 60 * len(res["values"]) + 40
    base = alt.Chart(cells, height=size).encode(
        x=alt.X("second:N", title=f"{second}'s label", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("first:N", title=f"{first}'s label"))
    heat = base.mark_rect().encode(color=alt.Color("items:Q", scale=alt.Scale(scheme="blues"), title="items"),
                                   tooltip=["first", "second", "items"])
    st.altair_chart(heat + base.mark_text(fontSize=14).encode(text="items:Q"), width="stretch")
else:
    st.info("Agreement needs at least two annotators on the same traces.")

st.subheader("Judges against people")
if label != "behavior_label":
    st.caption("The refusal judges give a behaviour label: choose the label `behavior_label` to see them here.")
elif res["judges"]:
    st.caption("Each judge's behaviour label on this queue's traces against the people's consensus (majority; ties "
               "left out).")
    st.dataframe(pd.DataFrame(res["judges"]), hide_index=True)
else:
    st.info("No trace in this queue has both a people's behaviour label (`d` in Review) and a judge's label.")
with st.expander("Judge versions and their measured agreement (shipped held-out responses)"):
    st.dataframe(pd.DataFrame(judge_cards(eng)), hide_index=True)
    st.caption("`rational judge train` refits the learned judge on every reviewer label: a new version.")
