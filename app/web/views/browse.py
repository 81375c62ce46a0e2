"""Browse (reviewers, admins): filtered, paginated traces; a click on a row opens the trace with its history as a
timeline (who, when, what changed, edits as diffs); bulk decisions for admins."""
from __future__ import annotations

import json

import streamlit as st

from app.web.components.trace_text import facts_line, text_box
from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from core.vocabulary import TRACE_STATUSES
from curation.auth import can, list_users
from curation.review import annotations, reading
from curation.review.audit import event_changes, trace_history
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
st.caption(f"{total} traces match · click a row to open the trace and its history")
# Keyed by page and filter: a row picked on one page never opens another page's row at the same position.
table_key = f"br_table_{page_no}_{hash(json.dumps(flt.to_dict(), sort_keys=True, default=str))}"
picked = st.dataframe(
    rows, hide_index=True, on_select="rerun", selection_mode="single-row", key=table_key,
    column_order=["id", "status", "set", "expected_behavior", "mutation", "annotations", "decided_how", "prompt",
                  "response", "auto_labels"],
    column_config={"id": st.column_config.NumberColumn("id", width="small"),
                   "prompt": st.column_config.TextColumn("prompt", width="large"),
                   "response": st.column_config.TextColumn("response", width="large"),
                   "auto_labels": st.column_config.TextColumn("auto-labels", width="small")})
chosen = [i for i in picked.selection.rows if i < len(rows)]
TEXT_FIELDS = ("edited_reasoning", "edited_response", "comment", "reasoning", "response")


def show_trace(tid: int) -> None:
    item = reading.load_item(eng, user.id, tid)
    st.subheader(f"Trace {tid}", anchor=False)
    facts_line(item, "status", "set", "expected_behavior", "mutation")
    final = reading.final_text(eng, user.id, tid)
    left, right = st.columns(2)
    with left:
        for title, text, height in (("Prompt", item["prompt"], 90),
                                    ("Reasoning" + (" (final, edited)" if final["edited"] else ""),
                                     final["reasoning"], 200),
                                    ("Response" + (" (final, edited)" if final["edited"] else ""),
                                     final["response"], 150)):
            text_box(text or "", height, title=title)
        if item["auto_labels"]:
            with st.expander("Auto-labels"):
                st.dataframe([{k: a[k] for k in ("kind", "agent", "label", "score")} for a in item["auto_labels"]],
                             hide_index=True)
    with right:
        st.markdown("**History**")
        events = trace_history(eng, user.id, tid)
        if not events:
            st.caption("Nothing has happened to this trace yet.")
        with st.container(height=520, key="br_timeline"):
            for ev in events:
                when = ev["at"].strftime("%Y-%m-%d %H:%M:%S") if ev["at"] else "?"
                st.markdown(f"**{plain(ev['actor'] or 'system')}** · {ev['entity']} {plain(ev['action'])} · {when}")
                for field, was, now in event_changes(ev):
                    if field in TEXT_FIELDS and (was or now):
                        st.code(reading.text_diff(str(was or ""), str(now or "")) or f"{field}: {now}",
                                language="diff")
                    else:
                        st.text(f"{field}: {'—' if was is None else was} → {'—' if now is None else now}")
                st.divider()


if chosen:
    show_trace(int(rows[chosen[0]]["id"]))

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
