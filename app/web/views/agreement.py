"""Agreement (reviewers, admins): Cohen's kappa per pair, Krippendorff's alpha, disagreement and confusion."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.state import engine
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
