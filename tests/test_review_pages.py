"""The review pages through AppTest on a real database (SQLite and PostgreSQL): what each role sees and what
each button does to the database."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from curation.review import claims, queues
from db.models import Annotation, Trace
from tests.factories import make_traces, make_user, make_users

PAGES = Path(__file__).resolve().parents[1] / "app" / "web" / "views"
TIMEOUT = 120


def page(name: str, user) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT)
    at.session_state["user_id"] = user.id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def texts(at: AppTest) -> str:
    return "\n".join(t.value for t in at.text)


def test_review_page_buttons_write_annotations(app_db):
    users = make_users(app_db)
    a = users["annotator"]
    tids = make_traces(app_db, 4)
    queues.create_queue(app_db, users["admin"], "main", {}, overlap=1, members=[a.id])
    at = page("review.py", a)
    assert f"Trace {tids[0]}" in [h.value for h in at.subheader]
    button(at, "rv_q4").click().run()
    assert "decision label: — (not set" in texts(at)  # no judge suggestion: empty, not the expected behaviour
    button(at, "rv_cycle").click().run()  # - -> refuse
    button(at, "rv_cycle").click().run()  # refuse -> comply
    button(at, "rv_approve").click().run()
    assert f"Trace {tids[1]}" in [h.value for h in at.subheader]
    assert "1 decided by you" not in texts(at) and any("2 of 4" in m.value for m in at.markdown)
    button(at, "rv_reject").click().run()  # opens the reason panel: nothing saved yet, no reason chosen
    assert at.radio(key="rv_reason").value is None
    button(at, "rv_reject_confirm").click().run()
    assert "Choose why you reject it first (Esc cancels)." in [e.value for e in at.error]
    at.radio(key="rv_reason").set_value("wrong decision for this prompt")
    next(t for t in at.text_area if t.key == "rv_reject_comment").set_value("it should refuse")
    button(at, "rv_reject_confirm").click().run()
    button(at, "rv_edit").click().run()
    area = next(t for t in at.text_area if t.key == "rv_edit_response")
    area.set_value("I won't help with that.")  # a form: sent with its submit button
    button(at, "rv_save").click().run()
    assert not at.exception
    with Session(app_db) as s:
        anns = {x.trace_id: x for x in s.execute(select(Annotation)).scalars()}
        status = {t.id: t.status for t in s.execute(select(Trace)).scalars()}
    assert (anns[tids[0]].decision, anns[tids[0]].quality, anns[tids[0]].behavior_label) == ("approve", 4, "comply")
    assert anns[tids[1]].decision == "reject" and anns[tids[2]].edited_response == "I won't help with that."
    assert anns[tids[1]].comment == "wrong decision for this prompt: it should refuse"
    assert [status[t] for t in tids] == ["approved", "rejected", "approved", "pending"]
    assert any("+I won't help with that." in c.value for c in at.code)  # the diff against the original
    button(at, "rv_undo").click().run()
    assert f"Trace {tids[2]}" in [h.value for h in at.subheader]
    with Session(app_db) as s:
        assert s.get(Trace, tids[2]).status == "pending"


def test_decision_label_starts_from_the_judges_suggestion_and_says_so(app_db):
    users = make_users(app_db)
    make_traces(app_db, 1, behavior="refuse", auto_labels={0: [("decision", "comply")]})
    queues.create_queue(app_db, users["admin"], "main", {}, overlap=1, members=[users["annotator"].id])
    at = page("review.py", users["annotator"])
    assert "decision label: comply (suggested by test-decision" in texts(at)  # the judge's, not "refuse" expected
    button(at, "rv_cycle").click().run()
    assert "decision label: partial (yours" in texts(at)


def test_review_page_shows_model_text_as_text(app_db):
    users = make_users(app_db)
    evil = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> **bold**'
    make_traces(app_db, 1, responses=[evil])
    queues.create_queue(app_db, users["admin"], "main", {}, overlap=1, members=[users["annotator"].id])
    at = page("review.py", users["annotator"])
    assert evil in texts(at)  # st.text: shown verbatim, never parsed as HTML or Markdown
    assert not any(evil in m.value for m in at.markdown)


def test_review_page_refuses_non_members_and_content_warning(app_db):
    users = make_users(app_db)
    outsider = make_user(app_db, "annotator")
    make_traces(app_db, 1, category="self-harm")
    queues.create_queue(app_db, users["admin"], "main", {}, overlap=1, members=[users["annotator"].id])
    at = page("review.py", outsider)
    assert "not a member of any queue" in at.info[0].value
    from curation.review.preferences import save_settings

    save_settings(app_db, users["annotator"], ["self-harm"], 0)
    at = page("review.py", users["annotator"])
    assert at.expander[0].label.startswith("Content warning: self-harm")


def _refused(name: str, user) -> bool:
    at = page(name, user)
    return any("does not allow this page" in e.value for e in at.error)


def test_pages_role_gates(app_db):
    users = make_users(app_db)
    expect = {"queues.py": {"admin"}, "users_admin.py": {"admin"}, "browse.py": {"admin", "reviewer"},
              "agreement.py": {"admin", "reviewer"}, "adjudication.py": {"admin", "reviewer"},
              "settings.py": {"admin", "reviewer", "annotator"}, "review.py": {"admin", "reviewer", "annotator"}}
    got = {name: {r for r, u in users.items() if not _refused(name, u)} for name in expect}
    assert got == expect


def test_queues_page_creates_queue_and_shows_progress(app_db):
    users = make_users(app_db)
    make_traces(app_db, 3)
    at = page("queues.py", users["admin"])
    next(t for t in at.text_input if t.label == "Name").set_value("fresh")
    next(m for m in at.multiselect if m.label == "Members").set_value([users["annotator"].id])
    next(b for b in at.button if b.label == "Create queue").click().run()
    assert not at.exception and "Queue 'fresh' created" in at.success[0].value
    at.run()
    assert "0 of 3 traces decided" in at.get("progress")[0].proto.text
    assert queues.list_queues(app_db, users["annotator"])[0]["name"] == "fresh"


def test_queue_progress_counts_disputed_traces_apart_and_points_to_adjudication(app_db):
    from curation.review.annotations import submit_annotation

    users = make_users(app_db)
    second = make_user(app_db, "annotator", "ann2")
    make_traces(app_db, 2)
    q = queues.create_queue(app_db, users["admin"], "two", {}, overlap=2, members=[users["annotator"].id, second.id])
    for who, decision in ((users["annotator"], "approve"), (second, "reject")):  # they disagree on one trace
        c = claims.claim_next(app_db, who, q.id)
        submit_annotation(app_db, who, c.trace_id, decision=decision, trace_version=c.trace_version, queue_id=q.id)
    at = page("queues.py", users["admin"])
    assert "0 of 2 traces decided · 1 wait for adjudication" in at.get("progress")[0].proto.text
    assert any("Adjudicate the 1 disputed traces" in c.value for c in at.caption)


def test_a_queue_made_from_the_generate_pages_next_step_holds_that_runs_traces(app_db):
    users = make_users(app_db)
    make_traces(app_db, 3, set_name="older")
    newer = make_traces(app_db, 2, set_name="newer")
    with Session(app_db) as s:
        run_id = s.get(Trace, newer[0]).run_id
    at = AppTest.from_file(str(PAGES / "queues.py"), default_timeout=TIMEOUT)
    at.session_state["user_id"] = users["admin"].id
    at.session_state["queue_from_run"] = run_id  # what the Generate page's "Next" link leaves
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = next(m for m in at.multiselect if m.label == "Generation runs")
    assert runs.value == [run_id] and at.text_input(key="q_name").value == f"review run {run_id}"
    next(m for m in at.multiselect if m.label == "Members").set_value([users["annotator"].id])
    next(b for b in at.button if b.label == "Create queue").click().run()
    assert not at.exception and f"Queue 'review run {run_id}' created" in at.success[0].value
    q = queues.list_queues(app_db, users["admin"])[0]
    assert q["items"] == 2


def test_browse_history_and_bulk(app_db):
    users = make_users(app_db)
    tids = make_traces(app_db, 3, responses=["alpha", "beta", "gamma"])
    at = page("browse.py", users["reviewer"])
    assert "3 traces match" in at.caption[0].value
    assert not [b for b in at.button if b.label == "Apply bulk decision"]  # reviewers have no bulk action
    at = page("browse.py", users["admin"])
    next(t for t in at.text_input if t.label == "Search prompt, reasoning and response").set_value("beta").run()
    assert "1 traces match" in at.caption[0].value
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Apply bulk decision").click().run()
    assert "1 traces set to approved" in at.success[0].value
    with Session(app_db) as s:
        assert [s.get(Trace, t).status for t in tids] == ["pending", "approved", "pending"]
    assert not at.exception  # opening a trace by a row click: tests/test_browse_browser.py


def test_adjudication_agreement_settings_users_pages(app_db):
    from curation.review import annotations, preferences

    users = make_users(app_db)
    a1, a2 = users["annotator"], make_user(app_db, "annotator", "bea")
    tids = make_traces(app_db, 2, category="weapons")
    q = queues.create_queue(app_db, users["admin"], "pair", {}, overlap=2, members=[a1.id, a2.id])
    for who, d in ((a1, "approve"), (a2, "reject")):
        while (c := claims.claim_next(app_db, who, q.id)) is not None:
            annotations.submit_annotation(app_db, who, c.trace_id, decision=d, trace_version=c.trace_version,
                                     queue_id=q.id)
    at = page("agreement.py", users["reviewer"])
    assert [m.value for m in at.metric][1] == "100.0%"  # both traces disagree
    at = page("adjudication.py", users["reviewer"])
    def shown() -> list[str]:
        return [h.value for h in at.subheader if h.value.startswith("Trace ")]

    assert shown() == [f"Trace {tids[0]}"]  # one at a time
    button(at, "adj_next").click().run()
    assert shown() == [f"Trace {tids[1]}"]
    button(at, "adj_next").click().run()  # wraps to the first
    button(at, "adj_reject").click().run()
    assert shown() == [f"Trace {tids[1]}"]
    with Session(app_db) as s:
        t = s.get(Trace, tids[0])
        assert (t.status, t.decided_how, t.decided_by) == ("rejected", "adjudication", users["reviewer"].id)
    at = page("settings.py", a1)
    at.multiselect[0].set_value(["weapons"])
    at.button[0].click().run()
    assert preferences.get_settings(app_db, a1)["blur_categories"] == ["weapons"]
    at = page("users_admin.py", users["admin"])
    next(t for t in at.text_input if t.label == "User name").set_value("newbie")
    next(t for t in at.text_input if t.label == "Password").set_value("password123")
    next(b for b in at.button if b.label == "Add user").click().run()
    assert "'newbie' added as annotator" in at.success[0].value
    assert {r["user"] for r in at.dataframe[-1].value.to_dict("records")} == {"annotator", "bea"}


APP = PAGES.parent / "streamlit_app.py"


def test_app_requires_login_and_first_run_form(app_db):
    # The app frame shows only the first-run form while no account exists.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert [h.value for h in at.subheader] == ["Create the first admin account"]
    # Every page runs the same gate (AppTest drives forms on a page script; the real app is covered in Chromium).
    at = AppTest.from_file(str(PAGES / "settings.py"), default_timeout=TIMEOUT).run()
    for label, value in (("Admin user name", "root"), ("Password (8+ characters)", "password123"),
                         ("Repeat password", "password123")):
        next(t for t in at.text_input if t.label == label).set_value(value)
    at.button[0].click().run()
    assert not at.exception and [t.value for t in at.title] == ["My settings"]
    from curation.auth import list_users

    assert [(u.username, u.role) for u in list_users(app_db)] == [("root", "admin")]
    # With an account in the database the first-run form is gone: a fresh session gets the sign-in form only.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert [h.value for h in at.subheader] == ["Sign in"]
    at = AppTest.from_file(str(PAGES / "settings.py"), default_timeout=TIMEOUT).run()
    next(t for t in at.text_input if t.label == "User name").set_value("root")
    next(t for t in at.text_input if t.label == "Password").set_value("wrong password")
    at.button[0].click().run()
    assert "wrong password" in at.error[0].value and [h.value for h in at.subheader] == ["Sign in"]
    next(t for t in at.text_input if t.label == "Password").set_value("password123")
    at.button[0].click().run()
    assert [t.value for t in at.title] == ["My settings"]
    from core.errors import PermissionDenied
    from curation.auth import create_first_admin

    with pytest.raises(PermissionDenied):
        create_first_admin(app_db, "second", "password123")


