"""One home for each rule: the filter builder, the settings module, the auth table and the job runner, each pinned
where two copies used to disagree."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.settings import Settings
from curation.auth import PERMISSIONS, authenticate, create_user
from db.filters import PromptFilter, TraceFilter
from db.models import Prompt, Trace
from tests.factories import make_traces

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["core", "db", "curation", "training", "evaluation", "workflows", "app"]


def _product_files():
    for pkg in PRODUCT:
        yield from (p for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


def test_only_the_settings_module_reads_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in _product_files()
               if re.search(r"os\.environ|os\.getenv|getenv\(", p.read_text(encoding="utf-8"))]
    assert readers == ["core/settings.py"]


def test_no_product_file_names_a_path_outside_the_repo_or_an_issue():
    bad = []
    for p in _product_files():
        text = p.read_text(encoding="utf-8")
        if re.search(r"/work/|\.\./shared|/home/\w|issue\s*#?\d", text, re.I):
            bad.append(str(p.relative_to(ROOT)))
    assert bad == []


def test_readme_configuration_table_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert missing == []


def test_every_permission_names_known_roles():
    assert all(roles and roles <= {"admin", "reviewer", "annotator"} for roles in PERMISSIONS.values())


def test_an_unknown_user_name_costs_a_password_check_like_a_known_one(engine, monkeypatch):
    """Timing must not reveal which names exist: the hash is verified (against a dummy) for unknown names too."""
    import curation.auth as auth

    create_user(engine, "alice", "correct horse", "annotator")
    calls: list[str] = []

    class Spy:
        def verify(self, h, pw):
            calls.append(h)
            return real.verify(h, pw)

    real = auth._hasher
    monkeypatch.setattr(auth, "_hasher", Spy())
    assert authenticate(engine, "alice", "wrong horse") is None
    assert authenticate(engine, "nobody", "wrong horse") is None
    assert len(calls) == 2 and calls[1] == auth._DUMMY_HASH


def test_unmutated_marker_is_one_value_and_old_queue_filters_still_work(engine):
    """Queues stored "(none)"; exports and compare used "none". Both now mean unmutated prompts."""
    make_traces(engine, 3)
    with Session(engine) as s:
        pid = s.execute(select(Trace.prompt_id).order_by(Trace.id).limit(1)).scalar()
        s.get(Prompt, pid).mutation = "slang"
        s.commit()

    def ids(flt):
        with Session(engine) as s:
            return s.execute(flt.apply(select(Trace.id).join(Prompt, Prompt.id == Trace.prompt_id))).scalars().all()

    unmutated = ids(TraceFilter(mutations=["none"]))
    assert len(unmutated) == 2
    assert ids(TraceFilter.from_dict({"mutations": ["(none)"]})) == unmutated
    assert TraceFilter.from_dict({"mutations": ["(none)"]}).to_dict() == {"mutations": ["none"]}
    assert len(ids(TraceFilter(mutations=["slang", "none"]))) == 3


def test_search_is_literal_text_everywhere(engine):
    """One LIKE helper: % and _ in a search are characters, not wildcards, for prompts and traces alike."""
    make_traces(engine, 2, responses=["save 50% now", "save 50 now"])
    with Session(engine) as s:
        ps = s.execute(select(Prompt.set_id)).scalars().first()
        s.add_all([Prompt(project_id=1, set_id=ps, text=text, sha256=str(i) * 64, expected_behavior="refuse")
                   for i, text in enumerate(["off 50% today", "off 50 today", "off 5000 today"])])
        s.commit()
        prompts = s.execute(PromptFilter(search="50%").apply(select(Prompt.text))).scalars().all()
        traces = s.execute(TraceFilter(search="50%").apply(select(Trace.response).join(
            Prompt, Prompt.id == Trace.prompt_id))).scalars().all()
        under = s.execute(PromptFilter(search="50_").apply(select(Prompt.text))).scalars().all()
    assert prompts == ["off 50% today"] and traces == ["save 50% now"] and under == []


@pytest.mark.parametrize("role", ["annotator", "reviewer", "admin"])
def test_every_view_guards_itself_exactly_as_the_menu_shows_it(app_db, role):
    """The sidebar and each view's own guard derive from one table: a view outside the role's menu refuses to
    draw, a view inside it draws (run directly, as a URL would open it)."""
    from streamlit.testing.v1 import AppTest

    from app.web.navigation import VIEWS, menu

    uid = create_user(app_db, f"{role}-x", "password123", role).id
    shown = {v.file for views in menu(role).values() for v in views}
    for view in VIEWS:
        at = AppTest.from_file(str(view.path), default_timeout=120)
        at.session_state["user_id"] = uid
        at.run()
        refused = any("does not allow this page" in e.value for e in at.error)
        assert refused == (view.file not in shown), (role, view.file)
