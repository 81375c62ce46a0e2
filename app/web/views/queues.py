"""Queues (admins): create a queue from a trace filter, set overlap and members, and watch progress."""
from __future__ import annotations

import streamlit as st

from app.web.login import page_user
from app.web.navigation import link_to
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from core.vocabulary import BEHAVIORS, TRACE_STATUSES
from curation.auth import list_users
from curation.review import queues
from db.crud import generation_run_names, list_sets

user = page_user(__file__)
eng = engine()
st.title("Queues")
people = {u.id: f"{u.username} ({u.role})" for u in list_users(eng) if u.is_active}

# Decided once per session: an expander whose `expanded` changes between reruns folds a half-filled form.
# A run the user came from (the Generate page's "Next" link) is preselected and opens the form.
from_run = st.session_state.pop("queue_from_run", None)
run_names = generation_run_names(eng)
if from_run in run_names:
    st.session_state["q_form_open"] = True
    st.session_state["q_runs"] = [from_run]
    st.session_state["q_name"] = st.session_state.get("q_name") or f"review run {from_run}"
with st.expander("New queue", expanded=st.session_state.setdefault("q_form_open",
                                                                   not queues.list_queues(eng, user.id))):
    with st.form("new_queue"):
        name = st.text_input("Name", key="q_name")
        run_ids = st.multiselect("Generation runs", list(run_names), format_func=run_names.get, key="q_runs")
        sets = st.multiselect("Prompt sets", [s["name"] for s in list_sets(eng)])
        behaviors = st.multiselect("Expected behaviour", list(BEHAVIORS))
        mutations = st.text_input("Mutations (comma separated; (none) = unmutated)")
        statuses = st.multiselect("Trace status", list(TRACE_STATUSES), default=["pending", "in_review"])
        labels = st.text_input("Auto-labels (kind=label, comma separated)")
        flagged = st.checkbox("Only traces whose auto-labels disagree with the expected behaviour")
        overlap = st.number_input("Overlap (distinct annotators per trace)", 1, 10, 1)
        members = st.multiselect("Members", list(people), format_func=people.get)
        if st.form_submit_button("Create queue"):
            flt = {"run_ids": run_ids, "set_names": sets, "behaviors": behaviors, "statuses": statuses, "flagged_only": flagged,
                   "mutations": [m.strip() for m in mutations.split(",") if m.strip()],
                   "auto_labels": [x.strip() for x in labels.split(",") if x.strip()]}
            try:
                q = queues.create_queue(eng, user.id, name, flt, overlap=int(overlap), members=members)
                st.success(f"Queue '{plain(q.name)}' created")
            except (ValueError, PermissionDenied) as e:
                st.error(plain(e))

for q in queues.list_queues(eng, user.id):
    p = queues.queue_progress(eng, user.id, q["id"])
    st.subheader(plain(q["name"]))
    skipped = (f" · {p['skipped']} skipped (each comes back at the end of its skipper's queue)"
               if p["skipped"] else "")
    disputed = f" · {p['disputed']} wait for adjudication" if p["disputed"] else ""
    st.progress(p["fraction"], text=f"{p['decided']} of {p['items']} traces decided{disputed} · overlap "
                f"{q['overlap']}{skipped}")
    if p["disputed"]:
        link_to(user.role, "adjudication.py", f"Adjudicate the {p['disputed']} disputed traces")
    st.dataframe([{"member": m["username"], "role": m["role"], "annotations": m["annotations"]}
                  for m in p["members"]], hide_index=True)
    with st.form(f"edit_{q['id']}"):
        current = [m["user_id"] for m in p["members"]]
        members = st.multiselect("Members", list(people), default=current, format_func=people.get,
                                 key=f"m_{q['id']}")
        overlap = st.number_input("Overlap", 1, 10, q["overlap"], key=f"o_{q['id']}")
        active = st.checkbox("Active", q["is_active"], key=f"a_{q['id']}")
        c1, c2 = st.columns(2)
        save = c1.form_submit_button("Save")
        refresh = c2.form_submit_button("Add new matching traces")
        if save:
            try:
                queues.update_queue(eng, user.id, q["id"], q["version"], overlap=int(overlap), is_active=active,
                                members=members)
                st.rerun()
            except ConflictError as e:
                st.error(f"{plain(e)}. Reload to see the other change.")
            except (ValueError, PermissionDenied) as e:
                st.error(plain(e))
        if refresh:
            st.success(f"{queues.refresh_queue(eng, user.id, q['id'])} traces added")
