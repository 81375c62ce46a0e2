"""The Export & train and Runs pages through Streamlit's AppTest, on a real SQLite database."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.errors import PermissionDenied
from db.engine import make_engine
from tests.test_export import add_user, seed
from training import runs

PAGES = Path(__file__).resolve().parents[1] / "app" / "web" / "views"


@pytest.fixture
def page_db(sqlite_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    st.cache_resource.clear()
    st.cache_data.clear()
    eng = make_engine(sqlite_url)
    yield eng
    st.cache_resource.clear()
    eng.dispose()


def _page(name: str, user_id=None) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=60)
    if user_id is not None:
        at.session_state["user_id"] = user_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _types(node) -> list[str]:
    out = [getattr(node, "type", "")]
    for child in getattr(node, "children", {}).values():
        out += _types(child)
    return out


def _user(eng, name, role):
    from sqlmodel import Session

    from db.models import User

    uid = add_user(eng, name)
    with Session(eng) as s:
        u = s.get(User, uid)
        u.role = role
        s.add(u)
        s.commit()
    return uid


def test_export_train_page_counts_previews_and_queues(page_db):
    seed(page_db, n=8)
    reviewer = _user(page_db, "rev", "reviewer")
    at = _page("export_train.py", reviewer)
    assert [m.value for m in at.metric][:2] == ["8", "8"]
    at.multiselect(key="et_sets").select("harm-train").run()
    assert at.metric[0].value == "4"
    code = at.code[0].value
    assert "rational export" in code and "--filter sets=harm-train" in code and "rational train" in code
    at.text_input(key="et_name").input("page-export").run()
    at.button(key="et_go").click().run()
    assert not at.exception and "Queued training run" in at.success[0].value
    run = runs.list_runs(page_db)[0]
    assert run.export_name == "page-export" and run.export_id is None and run.created_by == reviewer

    # "Export only" queues a snapshot without a run; once built, it is offered as a zip.
    at.text_input(key="et_name").input("only-export").run()
    at.button(key="et_export_only").click().run()
    from sqlmodel import Session, select

    from db.jobs import run_job_here
    from db.models import Job

    with Session(page_db) as s:
        job = s.exec(select(Job).where(Job.kind == "export")).one()
    assert job.params["name"] == "only-export" and len(runs.list_runs(page_db)) == 1
    assert run_job_here(page_db, job.id).status == "succeeded"
    at = _page("export_train.py", reviewer)
    assert at.selectbox(key="et_dl_pick").value is not None
    assert not at.get("download_button")  # nothing is packed until asked
    at.button(key="et_zip_go").click().run()
    assert not at.exception and at.get("download_button")  # then the zip is offered
    import io
    import zipfile

    from curation.export.snapshot import get_export, snapshot_archive

    fname, data = snapshot_archive(page_db, reviewer, get_export(page_db, "only-export").id)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert fname == "only-export.zip" and "only-export/README.md" in names
    assert any(n.endswith(".jsonl") for n in names) and any(n.endswith(".parquet") for n in names)
    with pytest.raises(Exception, match="too large"):
        snapshot_archive(page_db, reviewer, get_export(page_db, "only-export").id, max_bytes=10)

    annotator = _user(page_db, "ann2", "annotator")
    at = _page("export_train.py", annotator)  # the page's guard stops an annotator before any widget
    assert "does not allow this page" in at.error[0].value and not at.button
    with pytest.raises(PermissionDenied):  # and the service refuses on its own
        runs.export_and_train(page_db, user_id=annotator, export_name="not-allowed", kind="sft", filter={},
                              base_model="m")
    assert len(runs.list_runs(page_db)) == 1


def test_runs_page_shows_the_curve_and_cancels(page_db, tmp_path):
    from sqlalchemy import insert

    from curation.export.snapshot import create_export
    from db.models import TrainingMetric

    seed(page_db, n=6)
    create_export(page_db, "s", "sft", out_dir=tmp_path)
    run, job = runs.create_run(page_db, base_model="m", method="sft", export_name="s", preset="test")
    with page_db.begin() as c:
        c.execute(insert(TrainingMetric), [dict(run_id=run.id, step=i, kind="train", loss=3.0 - i * 0.1,
                                                values={}) for i in range(1, 4)])
    runs.set_status(page_db, run.id, "running", global_step=3, max_steps=10, log_tail="step 3 loss 2.7")
    at = _page("runs.py", _user(page_db, "rev", "reviewer"))
    assert not at.exception
    assert any("step 3 loss 2.7" in c.value for c in at.code)
    assert "vega_lite_chart" in _types(at._tree[0])  # the loss curve
    at.button(key=f"cancel_{run.id}").click().run()
    from db.jobs import get_job

    assert get_job(page_db, job.id).cancel_requested  # queued: cancelled at once
    assert runs.get_run(page_db, run.id).status == "cancelled"


def test_the_log_tail_keeps_the_trainers_lines_and_drops_warnings_and_bars():
    from training.runs import readable_log

    tail = ("training on 1 process(es), not_parallel, device cpu\n"
            "/x/trl/trainer.py:12: FutureWarning: `tokenizer` is deprecated\n"
            "  warnings.warn(\n"
            " 40%|████      | 4/10 [00:02<00:03,  1.9it/s]\r 50%|█████     | 5/10 [00:03<00:03,  1.8it/s]\n"
            "{'loss': 2.31, 'grad_norm': 1.2, 'learning_rate': 0.0002, 'epoch': 0.5}\n"
            "Traceback (most recent call last):\n  File \"run.py\", line 3\nValueError: bad row\n")
    assert readable_log(tail).splitlines() == [
        "training on 1 process(es), not_parallel, device cpu",
        "{'loss': 2.31, 'grad_norm': 1.2, 'learning_rate': 0.0002, 'epoch': 0.5}",
        "Traceback (most recent call last):", '  File "run.py", line 3', "ValueError: bad row"]
