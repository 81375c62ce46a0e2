"""Browse (reviewers, admins): filtered, paginated traces; a trace's history; bulk decisions for admins."""
from __future__ import annotations

import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from core.vocabulary import TRACE_STATUSES
from curation.auth import can, list_users
from curation.review import annotations, reading
from curation.review.audit import trace_history
from db.crud import list_sets
from db.filters import TraceFilter

PAGE_SIZE = 50
user = page_user(__file__)
eng = engine()
st.title("Browse traces")

c1, c2, c3, c4 = st.columns(4)
statuses = c1.multiselect("Status", list(TRACE_STATUSES))
sets = c2.multiselect("Set", [s["name"] for s in list_sets(eng)])
people = {u.id: u.username for u in list_users(eng)}
annotators = c3.multiselect("Annotated by", list(people), format_func=people.get)
labels = c4.text_input("Auto-labels (kind=label, …)")
search = st.text_input("Search prompt, reasoning and response")
flt = TraceFilter(statuses=statuses, set_names=sets, annotator_ids=annotators, search=search,
                  auto_labels=[x.strip() for x in labels.split(",") if x.strip()])
try:
    flt.validate()
except ValueError as e:
    st.error(plain(e))
    st.stop()

total, _ = reading.browse(eng, user.id, flt, limit=0)
pages = max(1, -(-total // PAGE_SIZE))
page_no = st.number_input(f"Page (of {pages})", 1, pages, 1)
_, rows = reading.browse(eng, user.id, flt, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE, count=False)
st.caption(f"{total} traces match")
st.dataframe(rows, hide_index=True,
             column_order=["id", "status", "set", "expected_behavior", "mutation", "annotations", "auto_labels",
                           "decided_how", "prompt", "response"])

tid = st.number_input("Trace id for its history", min_value=0, value=0, step=1)
if tid:
    events = trace_history(eng, user.id, int(tid))
    st.dataframe([{"at": e["at"], "who": e["actor"], "entity": e["entity"], "action": e["action"],
                   "before": e["before"], "after": e["after"]} for e in events], hide_index=True)

if can(user.role, "bulk"):
    st.subheader("Bulk decision on the whole filter")
    target = st.radio("Set every matching trace to", ["approved", "rejected"], horizontal=True)
    sure = st.checkbox(f"Yes, set all {total} matching traces to {target}")
    if st.button("Apply bulk decision", disabled=not sure or total == 0):
        try:
            n = annotations.bulk_decide(eng, user.id, flt, target, expected_count=total)
            st.success(f"{n} traces set to {target} (recorded in the audit log)")
        except (ConflictError, PermissionDenied, ValueError) as e:
            st.error(plain(e))
