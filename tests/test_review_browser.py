"""Real Chromium against `streamlit run`: sign in, open a queue, review three traces with the keyboard only
(approve, reject, edit with typed text), then check the database. And model text with <script>/<img onerror>
shows as literal text."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.review import queues
from db.engine import make_engine
from db.models import Annotation, Trace
from tests.browser import (
    app_env,
    at_trace,
    chromium_available,
    chromium_page,
    edit_with_keys,
    sign_in,
    streamlit_server,
)
from tests.factories import PASSWORD, make_traces, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]
EVIL = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def test_keyboard_review_of_three_traces(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    tids = make_traces(eng, 4, responses=["ok 0", EVIL, "ok 2", "ok 3"])
    queues.create_queue(eng, users["admin"], "kb", {}, overlap=1, members=[users["annotator"].id])
    env = app_env(sqlite_url, tmp_path / "home")
    with streamlit_server(env, tmp_path / "logs") as base_url, chromium_page() as page:
        sign_in(page, base_url, "annotator", PASSWORD, "/review")
        # Role-filtered navigation: an annotator sees Review but not the admin pages.
        page.get_by_role("link", name="Review", exact=True).wait_for()
        assert page.get_by_role("link", name="Queues", exact=True).count() == 0
        at_trace(page, tids[0])
        page.keyboard.press("4")
        page.get_by_text("quality: 4").wait_for()
        page.keyboard.press("a")
        at_trace(page, tids[1])
        # The rendering check: the model's markup is on the page as text, and none of it ran.
        assert page.get_by_text(EVIL, exact=True).count() == 1
        assert page.evaluate("() => window.pwned === undefined && !document.querySelector('img[src=\"x\"]')")
        page.keyboard.press("r")  # asks for a reason first: none is chosen for the reviewer
        page.get_by_text("Why reject?").wait_for()
        page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'TEXTAREA'")
        page.keyboard.press("Control+Enter")
        page.get_by_text("Choose why you reject it first").wait_for()  # nothing recorded yet
        page.get_by_text("wrong decision for this prompt").click()
        page.locator(".st-key-rv_reject_comment textarea").click()
        page.keyboard.press("Control+Enter")
        at_trace(page, tids[2])
        edit_with_keys(page, "rv_edit_response", "I will not help with that, and here is why.")
        at_trace(page, tids[3])
        page.get_by_text(f"Your last edit (trace {tids[2]})").wait_for()  # the diff, collapsed to one line
    with Session(eng) as s:
        anns = {a.trace_id: a for a in s.execute(select(Annotation)).scalars()}
        status = {t.id: t.status for t in s.execute(select(Trace)).scalars()}
    assert sorted(anns) == tids[:3]
    assert (anns[tids[0]].decision, anns[tids[0]].quality) == ("approve", 4)
    assert (anns[tids[1]].decision, anns[tids[1]].comment) == ("reject", "wrong decision for this prompt")
    assert anns[tids[2]].decision == "needs_edit"
    assert anns[tids[2]].edited_response == "I will not help with that, and here is why."
    assert [status[t] for t in tids] == ["approved", "rejected", "approved", "pending"]
    with Session(eng) as s:
        assert s.get(Trace, tids[2]).response == "ok 2"  # the model's original is untouched
    eng.dispose()
