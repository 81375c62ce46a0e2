"""The Generate page through Streamlit's AppTest on a real SQLite database: it starts generation, mutation and
labelling jobs (the worker runs them), shows live progress and each run's yield; annotators cannot use it."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import select
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from db.engine import make_engine
from db.models import GenerationRun, Job, User
from tests.test_generation import add_prompts

PAGE = Path(__file__).resolve().parents[1] / "app" / "web" / "views" / "generate.py"


@pytest.fixture
def page_db(sqlite_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    st.cache_resource.clear()
    eng = make_engine(sqlite_url)
    yield eng
    st.cache_resource.clear()
    eng.dispose()


def _user(eng, name, role) -> int:
    with Session(eng) as s:
        u = User(username=name, password_hash="not-a-real-hash", role=role)
        s.add(u)
        s.commit()
        return u.id


def _page(user_id) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.session_state["user_id"] = user_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _jobs(eng):
    with Session(eng) as s:
        return list(s.execute(select(Job).order_by(Job.id)).scalars())


def test_start_generation_and_see_progress_and_yield(page_db, tiny_model_dir):
    from app.worker import Worker

    add_prompts(page_db, "page-set")
    uid = _user(page_db, "rev", "reviewer")
    at = _page(uid)
    at.text_input(key="gen_model").input(str(tiny_model_dir))
    at.selectbox(key="gen_strategy").select("prefill")
    at.number_input(key="gen_k").set_value(2)
    at.number_input(key="gen_max").set_value(8)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = _jobs(page_db)
    assert job.kind == "generate" and job.created_by == uid and job.resumable
    with Session(page_db) as s:
        run = s.get(GenerationRun, job.params["run_id"])
        assert run.strategy == "prefill" and run.params["samples"] == 2 and run.job_id == job.id
    assert any("Waiting for a worker" in c.value for c in at.caption)  # the live job panel, while queued
    assert Worker(page_db).run_one()
    at = _page(uid)
    at.session_state["gen_job"] = job.id
    at.run()
    assert any("finished" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert int(table.loc[0, "samples"]) == 6 and "refuse: 0/4 candidates" in table.loc[0, "yield"]


def test_mutation_and_label_jobs(page_db):
    add_prompts(page_db, "page-set")
    uid = _user(page_db, "adm", "admin")
    at = _page(uid)
    at.multiselect(key="mut_jbb").select("PAIR")
    at.button[1].click().run()
    at.radio(key="label_judge").set_value("strmatch")
    at.button[2].click().run()
    assert not at.exception
    kinds = [(j.kind, j.params.get("jbb_methods") or j.params.get("judge")) for j in _jobs(page_db)]
    assert kinds == [("mutate", ["PAIR"]), ("label", "strmatch")]
    at.multiselect(key="mut_jbb").unselect("PAIR")
    at.button[1].click().run()  # nothing chosen: a clear error, no job
    assert any("nothing to do" in e.value for e in at.error) and len(_jobs(page_db)) == 2


def test_annotators_cannot_open_it(page_db):
    add_prompts(page_db, "page-set")
    at = _page(_user(page_db, "ann", "annotator"))
    assert "does not allow" in at.error[0].value and not at.button
