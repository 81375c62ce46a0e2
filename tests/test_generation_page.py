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


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _jobs(eng):
    with Session(eng) as s:
        return list(s.execute(select(Job).order_by(Job.id)).scalars())


def test_start_generation_and_see_progress_and_yield(page_db, tiny_model_dir):
    from app.worker import Worker

    add_prompts(page_db, "aa-older", [("Say hi", "comply")])
    add_prompts(page_db, "page-set")
    uid = _user(page_db, "rev", "reviewer")
    at = _page(uid)
    assert at.selectbox(key="gen_set").value == "page-set"  # the set imported last, not the first by name
    at.text_input(key="gen_model").input(str(tiny_model_dir))
    at.selectbox(key="gen_strategy").select("prefill")
    at.number_input(key="gen_k").set_value(2)
    at.number_input(key="gen_max").set_value(8)
    _button(at, "Start generation").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = _jobs(page_db)
    assert job.kind == "generate" and job.created_by == uid and job.resumable
    with Session(page_db) as s:
        run = s.get(GenerationRun, job.params["run_id"])
        assert run.strategy == "prefill" and run.params["samples"] == 2 and run.job_id == job.id
    assert any("Queued" in c.value for c in at.caption)  # the live run panel, while queued
    assert Worker(page_db).run_one()
    at = _page(uid)
    at.session_state["gen_pick"] = run.id
    at.run()
    assert any(f"Run {run.id}: succeeded · 6/6 samples" in p.proto.text for p in at.get("progress"))
    per_behavior = at.dataframe[0].value  # the run's yield, per behaviour
    assert dict(zip(per_behavior["behaviour"], per_behavior["samples"])) == {"comply": 2, "refuse": 4}
    assert any("Newest traces" in c.value for c in at.caption)
    runs = next(d.value for d in at.dataframe if "yield" in d.value.columns)
    assert int(runs.loc[0, "samples"]) == 6 and "refuse: 0/4 usable" in runs.loc[0, "yield"]


def test_mutation_and_label_jobs(page_db):
    add_prompts(page_db, "page-set")
    uid = _user(page_db, "adm", "admin")
    at = _page(uid)
    at.multiselect(key="mut_jbb").select("PAIR")
    _button(at, "Start mutation").click().run()
    at.radio(key="label_judge").set_value("rule")
    _button(at, "Start auto-labelling").click().run()
    assert not at.exception
    kinds = [(j.kind, j.params.get("jbb_methods") or j.params.get("judge")) for j in _jobs(page_db)]
    assert kinds == [("mutate", ["PAIR"]), ("label", "rule")]
    at.multiselect(key="mut_jbb").unselect("PAIR")
    _button(at, "Start mutation").click().run()  # nothing chosen: a clear error, no job
    assert any("nothing to do" in e.value for e in at.error) and len(_jobs(page_db)) == 2


def test_annotators_cannot_open_it(page_db):
    add_prompts(page_db, "page-set")
    at = _page(_user(page_db, "ann", "annotator"))
    assert "does not allow" in at.error[0].value and not at.button


def test_demo_library_tab_lists_and_disables_demos(page_db):
    from curation.generation.demos import list_demos

    add_prompts(page_db, "page-set")
    at = _page(_user(page_db, "rev2", "reviewer"))
    library = next(d.value for d in at.dataframe if "reasoning" in d.value.columns and "source" in d.value.columns)
    active = list_demos(page_db)
    assert len(library) == len(active) > 0 and set(library["source"]) == {"shipped"}
    at.selectbox(key="demo_pick").select(active[0]["id"])
    _button(at, "Disable").click().run()
    assert not at.exception
    assert [d["id"] for d in list_demos(page_db)] == [d["id"] for d in active[1:]]
