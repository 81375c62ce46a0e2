"""Agreement (reviewers, admins): Cohen's kappa per pair, Krippendorff's alpha, disagreement and confusion; the
refusal judges as annotators beside the people, and each judge version's measured agreement."""
from __future__ import annotations

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
res = agreement(eng, user.id, qid, label)
m1, m2, m3 = st.columns(3)
m1.metric("Krippendorff's α", "—" if res["alpha"] is None else f"{res['alpha']:.3f}")
m2.metric("Disagreement rate", "—" if res["disagreement_rate"] is None else f"{res['disagreement_rate']:.1%}")
m3.metric("Items with ≥ 2 annotations", res["items_multi"])
if res["pairs"]:
    st.subheader("Cohen's κ per pair")
    st.dataframe(pd.DataFrame(res["pairs"]), hide_index=True)
    km = pd.DataFrame(res["kappa_matrix"]).astype(float)
    st.subheader("Annotator × annotator κ")
    st.bar_chart(pd.DataFrame(res["pairs"]).assign(pair=lambda d: d["a"] + " / " + d["b"]).set_index("pair")["kappa"])
    st.dataframe(km)
    st.subheader("Confusion per pair")
    pair = st.selectbox("Pair", list(res["confusion"]))
    st.dataframe(pd.DataFrame(res["confusion"][pair]).T)
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
