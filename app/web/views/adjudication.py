"""Adjudication (reviewers, admins): traces whose annotators disagreed, all annotations side by side."""
from __future__ import annotations

import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError
from curation.review import annotations, reading

user = page_user(__file__)
eng = engine()
st.title("Adjudication")
items = reading.adjudication_items(eng, user.id, limit=10)
if not items:
    st.success("Nothing waits for adjudication.")
    st.stop()
for item in items:
    tid = item["trace_id"]
    st.subheader(f"Trace {tid}")
    st.text(f"set: {item['set']} · expected: {item['expected_behavior']} · mutation: {item['mutation'] or 'none'}")
    st.markdown("**Prompt**")
    st.text(item["prompt"])
    o1, o2 = st.columns(2)
    o1.markdown("**Model reasoning**")
    o1.text(item["reasoning"])
    o2.markdown("**Model response**")
    o2.text(item["response"])
    cols = st.columns(len(item["annotations"]))
    for col, a in zip(cols, item["annotations"]):
        with col:
            st.markdown(f"**{a['decision']}**")
            st.text(f"by {a['annotator']} · label {a['behavior_label']} · quality {a['quality']}")
            if a["comment"]:
                st.text(a["comment"])
            if a["edited_reasoning"]:
                st.code(reading.text_diff(item["reasoning"], a["edited_reasoning"]), language="diff")
            if a["edited_response"]:
                st.code(reading.text_diff(item["response"], a["edited_response"]), language="diff")
    edits = {a["id"]: f"{a['annotator']}'s edit" for a in item["annotations"]
             if a["edited_reasoning"] or a["edited_response"]}
    final = st.selectbox("Final text", [None, *edits], key=f"fin_{tid}",
                         format_func=lambda k: "the model's original" if k is None else edits[k])
    comment = st.text_input("Comment", key=f"c_{tid}")
    b1, b2 = st.columns(2)
    for col, status in ((b1, "approved"), (b2, "rejected")):
        if col.button(f"Set {status}", key=f"{status}_{tid}"):
            try:
                annotations.adjudicate(eng, user.id, tid, status, item["trace_version"], final_annotation_id=final,
                              comment=comment)
                st.rerun()
            except ConflictError as e:
                st.error(plain(e))
                if e.other_change:
                    st.json(e.other_change, expanded=False)
    st.divider()
