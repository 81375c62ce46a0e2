"""Argilla (admins): connection status and settings, pushed datasets with Argilla's progress, push and pull jobs.

Push and pull run as worker jobs; this page only enqueues them and draws their progress. The API key is never
shown: the form takes a new one, and the page says only whether one is set.
"""
from __future__ import annotations

import streamlit as st

from app.web.job_panel import job_panel
from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import PermissionDenied
from curation.review.argilla import connection, push
from curation.review.argilla.jobs import enqueue_pull, enqueue_push
from curation.review.queues import list_queues
from db.crud import list_sets

user = page_user(__file__)
eng = engine()
st.title("Argilla")
st.caption("Bulk annotation in Argilla's own UI. Pulled responses become annotations (source argilla) and count "
           "toward each queue's overlap and agreement like annotations made here.")


@st.cache_data(ttl=30, show_spinner="Checking the Argilla connection…")
def connection_status(url: str, workspace: str, key_set: bool) -> dict:
    # The arguments only key the cache; status() reads the current settings itself, so the key never enters it.
    return connection.status()


try:
    conn = connection.connection_settings()
except connection.ArgillaError as e:
    conn = None
    st.error(plain(e))

st.subheader("Connection")
reachable = False
if conn is None:
    st.warning("Not configured: set ARGILLA_API_URL and ARGILLA_API_KEY, or save them below.")
else:
    st_ = connection_status(conn.url, conn.workspace, bool(conn.api_key))
    reachable = st_["ok"]
    if st_["ok"]:
        st.success(f"Connected to {plain(conn.url)} as {plain(st_['username'])} ({plain(st_['role'])}), workspace "
                   f"'{plain(conn.workspace)}'.",
                   icon=":material/cloud_done:")
    else:
        why = str(st_.get("error") or "no answer")
        st.error(f"Cannot reach {plain(conn.url)}: {plain(why)}{'' if why.endswith(('.', '?')) else '.'} Push and "
                 "pull wait until it answers.", icon=":material/cloud_off:")
        if st.button("Check again", key="argilla_recheck"):
            connection_status.clear()
            st.rerun()
with st.expander("Connection settings", expanded=conn is None):
    st.caption("Environment variables ARGILLA_API_URL, ARGILLA_API_KEY and ARGILLA_WORKSPACE override these.")
    with st.form("argilla_settings"):
        url = st.text_input("Argilla URL", value=conn.url if conn else "", placeholder="http://localhost:6900")
        key = st.text_input("API key", type="password",
                            placeholder="(a key is set; leave empty to keep it)" if conn else "owner API key")
        workspace = st.text_input("Workspace", value=conn.workspace if conn else "rational")
        if st.form_submit_button("Save"):
            try:
                connection.save_connection_settings(eng, user.id, url, key or (conn.api_key if conn else ""), workspace)
                connection_status.clear()
                st.rerun()
            except (ValueError, PermissionDenied) as e:
                st.error(plain(e))


def start(enqueue_fn, **params) -> None:
    try:
        st.session_state["argilla_job"] = enqueue_fn(eng, user.id, **params).id
    except (ValueError, PermissionDenied) as e:
        st.error(plain(e))


st.subheader("Push traces")
queues = [q["name"] for q in list_queues(eng, user.id)]
with st.form("argilla_push"):
    source = st.radio("Traces", ["A review queue", "Prompt sets"], horizontal=True)
    queue = st.selectbox("Queue (its open traces; the dataset gets the queue's overlap)", queues or ["(none)"])
    sets = st.multiselect("Prompt sets", [s["name"] for s in list_sets(eng)])
    dataset = st.text_input("Dataset name (default: the queue's name)")
    overlap = st.number_input("Responses per record (prompt sets only)", 1, 10, 1)
    if st.form_submit_button("Push to Argilla", disabled=not reachable):
        if source == "A review queue" and queue in queues:
            start(enqueue_push, queue=queue, dataset=dataset.strip() or None)
        elif source == "Prompt sets" and sets and dataset.strip():
            start(enqueue_push, flt={"set_names": sets}, dataset=dataset.strip(), overlap=int(overlap))
        else:
            st.error("Choose a queue, or prompt sets and a dataset name.")

st.subheader("Pushed datasets")
rows = push.list_datasets(eng, conn=conn, with_progress=reachable)
if not rows:
    st.info("Nothing pushed yet.")
for d in rows:
    p = d["progress"] or {}
    with st.container(border=True):
        st.markdown(f"**{plain(d['name'])}** · workspace {plain(d['workspace'])} · "
                    f"{'queue ' + plain(d['queue']) if d['queue'] else 'filter'} · overlap {d['overlap']}")
        if p.get("total"):
            st.progress(p["completed"] / p["total"], text=f"Argilla: {p['completed']} of {p['total']} records "
                                                           "completed")
        elif p.get("error"):
            st.caption(f"Argilla progress unavailable: {plain(p['error'])}")
        pulled = ", ".join(f"{k} {v}" for k, v in sorted(d["pulled"].items())) or "nothing yet"
        st.caption(f"{d['records']} records · pulled: {pulled} · {d['conflicted_records']} conflicted records · "
                   f"pushed {d['pushed_at'] or '-'} · last pull {d['pulled_at'] or '-'}")
        if st.button("Pull responses", key=f"pull_{d['id']}", disabled=not reachable):
            start(enqueue_pull, dataset=d["name"])

if st.session_state.get("argilla_job"):
    job_panel(eng, st.session_state["argilla_job"])
