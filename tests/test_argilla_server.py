"""Argilla push/pull end to end against a REAL argilla-server 2.8.0 (its REST API, database, rq worker, Redis)
through the real `argilla` SDK. The one stand-in is the search engine: osmem-server (in-memory, OpenSearch
compatible) instead of OpenSearch/Elasticsearch; see tests/argilla_server/fixture.py. Annotators' responses are
submitted over Argilla's REST API exactly as its UI does. Runs on SQLite and PostgreSQL (the `engine` fixture).
"""
from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from curation.auth import update_user
from curation.review.agreement import agreement
from curation.review.annotations import adjudicate
from curation.review.argilla import connection, mapping, pull, push
from curation.review.queues import create_queue
from db.models import Annotation, ArgillaRecord, ArgillaResponse, AutoLabel, QueueMember, Trace, User
from tests.argilla_server.fixture import argilla_server  # noqa: F401  (session fixture)
from tests.factories import make_traces, make_user

pytestmark = pytest.mark.argilla
APP = Path(__file__).resolve().parents[1] / "app" / "web" / "streamlit_app.py"


@pytest.fixture
def conn(argilla_server):  # noqa: F811
    return connection.ArgillaConnection(argilla_server["url"], argilla_server["api_key"], argilla_server["workspace"])


def _owner(conn) -> httpx.Client:
    return httpx.Client(base_url=conn.url, headers={"X-Argilla-Api-Key": conn.api_key}, timeout=60)


def _argilla_user(conn, username: str) -> httpx.Client:
    """An annotator in Argilla (created once per server), as an HTTP client carrying their own API key."""
    h = _owner(conn)
    users = {u["username"]: u for u in h.get("/api/v1/users").raise_for_status().json()["items"]}
    if username not in users:
        u = h.post("/api/v1/users", json={"first_name": username, "username": username, "role": "annotator",
                                          "password": "annotator-pass-1"}).raise_for_status().json()
        ws = [w for w in h.get("/api/v1/me/workspaces").json()["items"] if w["name"] == conn.workspace][0]
        h.post(f"/api/v1/workspaces/{ws['id']}/users", json={"user_id": u["id"]}).raise_for_status()
        users[username] = u
    return httpx.Client(base_url=conn.url, headers={"X-Argilla-Api-Key": users[username]["api_key"]}, timeout=60)


def _dataset(conn, name: str) -> dict:
    items = _owner(conn).get("/api/v1/me/datasets").raise_for_status().json()["items"]
    return [d for d in items if d["name"] == name][0]


def _records(conn, dataset_id: str) -> dict[str, dict]:
    out, offset = {}, 0
    while True:
        page = _owner(conn).get(f"/api/v1/datasets/{dataset_id}/records",
                                params={"include": ["suggestions"], "offset": offset, "limit": 100}
                                ).raise_for_status().json()["items"]
        out.update({r["external_id"]: r for r in page})
        if len(page) < 100:
            return out
        offset += len(page)


def _respond(client: httpx.Client, record: dict, status: str, **values) -> None:
    body = {"status": status, "values": {k: {"value": v} for k, v in values.items()}}
    r = client.post(f"/api/v1/records/{record['id']}/responses", json=body)
    assert r.status_code == 201, r.text


def test_push_then_pull_round_trip(engine, conn):
    tag = uuid.uuid4().hex[:6]
    admin = make_user(engine, "admin")
    # ann1 exists locally and an admin linked it; a local admin shares ann2's name but is not linked, so ann2's
    # responses must not become that admin's (users are never matched by name).
    existing = make_user(engine, "reviewer", f"ann1-{tag}")
    update_user(engine, admin, existing.id, argilla_username=f"ann1-{tag}")
    namesake = make_user(engine, "admin", f"ann2-{tag}")
    ids = make_traces(engine, 50, set_name=f"set-{tag}", category="cybercrime",
                      auto_labels={i: [("refusal", "refuse"), ("decision", "approve")] for i in range(50)})
    with Session(engine) as s:
        s.add(AutoLabel(trace_id=ids[0], kind="refusal", agent="llm:judge", label="comply", score=0.9))
        s.commit()
    q = create_queue(engine, admin, f"argq-{tag}", {"set_names": [f"set-{tag}"]}, overlap=2)

    # push, and re-push: keyed by trace id, nothing duplicated
    res = push.push(engine, admin, queue=q.name, conn=conn)
    assert res["pushed"] == 50 and res["dataset"] == q.name
    again = push.push(engine, admin, queue=q.name, conn=conn)
    assert again["pushed"] == 50
    ds = _dataset(conn, q.name)
    recs = _records(conn, ds["id"])
    assert sorted(recs) == sorted(mapping.record_id(i) for i in ids)
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(ArgillaRecord)).scalar_one() == 50

    # the dataset as Argilla holds it: fields, questions, distribution, guidelines, metadata, suggestions
    h = _owner(conn)
    fields = {f["name"]: f for f in h.get(f"/api/v1/datasets/{ds['id']}/fields").json()["items"]}
    assert set(fields) == {"prompt", "reasoning", "response"}
    assert not any(f["settings"]["use_markdown"] for f in fields.values())
    questions = {x["name"]: x for x in h.get(f"/api/v1/datasets/{ds['id']}/questions").json()["items"]}
    assert set(questions) == {"decision", "response_behavior", "harm_categories", "quality",
                              "corrected_reasoning", "corrected_response"}
    assert [o["value"] for o in questions["decision"]["settings"]["options"]] == ["approve", "reject", "needs_edit"]
    assert "cybercrime" in [o["value"] for o in questions["harm_categories"]["settings"]["options"]]
    full = h.get(f"/api/v1/datasets/{ds['id']}").json()
    assert full["distribution"] == {"strategy": "overlap", "min_submitted": 2}
    assert "response_behavior" in full["guidelines"]
    r0 = recs[mapping.record_id(ids[0])]
    assert r0["metadata"]["trace_id"] == ids[0] and r0["metadata"]["trace_version"] == 1
    assert r0["metadata"]["set"] == f"set-{tag}" and r0["metadata"]["mutation"] == "none"
    by_q = {s["question_id"]: s for s in r0["suggestions"]}
    sugg = {name: by_q[q_["id"]] for name, q_ in questions.items() if q_["id"] in by_q}
    assert sugg["response_behavior"]["value"] == "comply" and sugg["response_behavior"]["agent"] == "llm:judge"
    assert sugg["response_behavior"]["score"] == pytest.approx(0.9)
    assert sugg["decision"]["value"] == "approve"
    assert sugg["corrected_reasoning"]["value"] == "reasoning 0"

    # two annotators answer in Argilla
    a1, a2 = _argilla_user(conn, f"ann1-{tag}"), _argilla_user(conn, f"ann2-{tag}")
    rec = [recs[mapping.record_id(i)] for i in ids]
    for client in (a1, a2):  # 0: both approve -> consensus approved
        _respond(client, rec[0], "submitted", decision="approve", response_behavior="refuse", quality=5)
    _respond(a1, rec[1], "submitted", decision="needs_edit", corrected_reasoning="A better reasoning 1",
             corrected_response="response 1", harm_categories=["cybercrime"], quality=3)
    _respond(a2, rec[1], "submitted", decision="reject", response_behavior="comply")
    _respond(a1, rec[2], "discarded")
    _respond(a1, rec[3], "draft", decision="approve")
    for client in (a1, a2):  # 4: changed locally before the pull -> conflict
        _respond(client, rec[4], "submitted", decision="approve")
    with Session(engine) as s:
        v4 = s.get(Trace, ids[4]).version
    adjudicate(engine, admin, ids[4], "rejected", v4)

    out = pull.pull(engine, admin, dataset=q.name, conn=conn)
    assert (out["annotated"], out["skipped"], out["conflicts"], out["invalid"], out["drafts"]) == (4, 1, 2, 0, 1)
    assert out["users_created"] == [f"argilla:ann2-{tag}"]

    with Session(engine) as s:
        users = {u.argilla_username: u for u in s.execute(select(User).where(User.username.like(f"%-{tag}"))).scalars()}
        assert users[f"ann1-{tag}"].id == existing.id and users[f"ann1-{tag}"].role == "reviewer"
        assert users[f"ann2-{tag}"].role == "annotator" and users[f"ann2-{tag}"].id != namesake.id
        assert not s.execute(select(Annotation.id).where(Annotation.annotator_id == namesake.id)).first()
        anns = {(a.trace_id, a.annotator_id): a for a in s.execute(
            select(Annotation).where(Annotation.trace_id.in_(ids))).scalars()}
        assert set(anns) == {(ids[0], existing.id), (ids[0], users[f"ann2-{tag}"].id), (ids[1], existing.id),
                             (ids[1], users[f"ann2-{tag}"].id)}
        assert all(a.source == "argilla" and a.queue_id == q.id for a in anns.values())
        edit = anns[(ids[1], existing.id)]
        assert edit.decision == "needs_edit" and edit.edited_reasoning == "A better reasoning 1"
        assert edit.edited_response is None  # unchanged model text is no edit
        assert edit.harm_categories == ["cybercrime"] and edit.quality == 3
        assert anns[(ids[1], users[f"ann2-{tag}"].id)].behavior_label == "comply"
        t0, t1, t4 = (s.get(Trace, ids[i]) for i in (0, 1, 4))
        assert (t0.status, t0.decided_how) == ("approved", "consensus")  # overlap 2 reached by two pulls
        assert t1.status == "needs_adjudication"
        assert t4.status == "rejected" and t4.decided_how == "adjudication"  # not overwritten
        conflict = s.execute(select(ArgillaRecord).where(ArgillaRecord.trace_id == ids[4])).scalars().one()
        assert "changed locally" in conflict.conflict and "adjudicate" in conflict.conflict
        skip = s.execute(select(ArgillaResponse).where(ArgillaResponse.trace_id == ids[2])).scalars().one()
        assert (skip.outcome, skip.status, skip.user_id) == ("skipped", "discarded", existing.id)
        members = set(s.execute(select(QueueMember.user_id).where(QueueMember.queue_id == q.id)).scalars())
        assert {existing.id, users[f"ann2-{tag}"].id} <= members
        n_ann = s.execute(select(func.count(Annotation.id))).scalar_one()
        n_resp = s.execute(select(func.count(ArgillaResponse.id))).scalar_one()

    # pulled annotations count in the queue's agreement like UI ones
    agr = agreement(engine, admin, q.id)
    assert agr["items_multi"] == 2 and agr["disagreement_rate"] == pytest.approx(0.5)

    # a second pull creates nothing
    out2 = pull.pull(engine, admin, dataset=q.name, conn=conn)
    assert (out2["annotated"], out2["skipped"], out2["conflicts"], out2["users_created"]) == (0, 0, 0, [])
    assert out2["unchanged"] == 7
    with Session(engine) as s:
        assert s.execute(select(func.count(Annotation.id))).scalar_one() == n_ann
        assert s.execute(select(func.count(ArgillaResponse.id))).scalar_one() == n_resp

    listed = {d["name"]: d for d in push.list_datasets(engine, conn=conn)}
    row = listed[q.name]
    assert row["records"] == 50 and row["conflicted_records"] == 1
    assert row["pulled"] == {"annotated": 4, "skipped": 1, "conflict": 2}
    assert row["progress"]["total"] == 50 and row["progress"]["completed"] == 3


def test_status_and_bad_key(conn):
    ok = connection.status(conn)
    assert ok["ok"] and ok["username"] == "owner" and ok["role"] == "owner"
    bad = connection.status(connection.ArgillaConnection(conn.url, "wrong-key-" + uuid.uuid4().hex, conn.workspace))
    assert not bad["ok"] and "wrong-key" not in bad["error"]


def test_cli_push_and_pull_job(conn, monkeypatch):
    """The CLI pushes a filter; the worker runs a pull job with progress; the key never shows in output."""
    from typer.testing import CliRunner

    from app.cli import app
    from app.worker import Worker
    from db import jobs as jobrows
    from db.crud import list_jobs
    from db.engine import get_engine
    from db.migrate import ensure_schema

    monkeypatch.setenv("ARGILLA_API_URL", conn.url)
    monkeypatch.setenv("ARGILLA_API_KEY", conn.api_key)
    monkeypatch.setenv("ARGILLA_WORKSPACE", conn.workspace)
    eng = get_engine()
    ensure_schema(eng)
    tag = uuid.uuid4().hex[:6]
    admin = make_user(eng, "admin")
    ids = make_traces(eng, 5, set_name=f"cli-{tag}", behavior="comply")
    runner = CliRunner()

    st = runner.invoke(app, ["argilla", "status"])
    assert st.exit_code == 0 and "connected" in st.output and conn.api_key not in st.output
    bad = runner.invoke(app, ["argilla", "push", "--filter", "behaviors=maybe", "--dataset", f"cli-{tag}"])
    assert bad.exit_code == 2 and "behaviors" in bad.output
    res = runner.invoke(app, ["argilla", "push", "--filter", f"set_names=cli-{tag}", "--dataset", f"cli-{tag}"])
    assert res.exit_code == 0, res.output
    assert '"pushed": 5' in res.output and conn.api_key not in res.output

    ds = _dataset(conn, f"cli-{tag}")
    assert ds["distribution"]["min_submitted"] == 1
    recs = _records(conn, ds["id"])
    _respond(_argilla_user(conn, f"cli-ann-{tag}"), recs[mapping.record_id(ids[2])], "submitted", decision="approve",
             response_behavior="comply")

    queued = runner.invoke(app, ["argilla", "pull", "--dataset", f"cli-{tag}", "--enqueue"])
    assert queued.exit_code == 0 and "queued job" in queued.output
    assert Worker(eng, heartbeat_s=0.5).run_one()
    job = list_jobs(eng, kinds=["argilla_pull"])[0]
    assert job.status == "succeeded", job.error
    assert job.result["annotated"] == 1 and job.progress_done == job.progress_total == 5
    with Session(eng) as s:
        t = s.get(Trace, ids[2])
        assert (t.status, t.decided_how) == ("approved", "consensus")  # overlap 1 without a queue
        assert s.execute(select(Annotation.source).where(Annotation.trace_id == ids[2])).scalar_one() == "argilla"
    listed = runner.invoke(app, ["argilla", "datasets"])
    assert listed.exit_code == 0 and f"cli-{tag}" in listed.output
    assert admin.id == job.created_by and jobrows.get_job(eng, job.id).status == "succeeded"



def test_argilla_page_status_push_and_pull(conn, monkeypatch, tmp_path):
    """The page (AppTest on the real app) shows the connection, enqueues a push, draws Argilla's progress and
    enqueues a pull; the worker runs the jobs in between, as the worker process would."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.worker import Worker
    from db.crud import list_jobs
    from db.engine import make_engine
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'page.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ARGILLA_API_URL", conn.url)
    monkeypatch.setenv("ARGILLA_API_KEY", conn.api_key)
    monkeypatch.setenv("ARGILLA_WORKSPACE", conn.workspace)
    st.cache_resource.clear()
    st.cache_data.clear()
    eng = make_engine(url)
    upgrade(eng)
    tag = uuid.uuid4().hex[:6]
    admin = make_user(eng, "admin")
    make_traces(eng, 3, set_name=f"page-{tag}")
    q = create_queue(eng, admin, f"pageq-{tag}", {"set_names": [f"page-{tag}"]}, overlap=1)

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["user_id"] = admin.id
    at.run()
    at.switch_page("views/argilla.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Connected to" in s.value for s in at.success)
    at.selectbox[0].select(q.name)
    [b for b in at.button if b.label == "Push to Argilla"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    push_job = list_jobs(eng, kinds=["argilla_push"])[0]
    assert push_job.params["queue"] == q.name and push_job.created_by == admin.id
    assert Worker(eng, heartbeat_s=0.5).run(once=True) == 1
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(m.value for m in [*at.markdown, *at.caption, *at.success, *at.error])
    assert q.name in shown and "3 records" in shown and conn.api_key not in shown
    [b for b in at.button if b.label == "Pull responses"][0].click().run()
    pull_job = list_jobs(eng, kinds=["argilla_pull"])[0]
    assert pull_job.params == {"dataset": q.name, "created_by": admin.id}
    assert Worker(eng, heartbeat_s=0.5).run(once=True) == 1
    assert list_jobs(eng, kinds=["argilla_pull"])[0].status == "succeeded"
    st.cache_resource.clear()
    eng.dispose()
