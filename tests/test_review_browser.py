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
    UI_TIMEOUT_MS,
    app_env,
    chromium_available,
    chromium_page,
    sign_in,
    streamlit_server,
    wait_for_app,
)
from tests.factories import PASSWORD, make_traces, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]
EVIL = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def trace_heading(page, tid: int) -> None:
    page.get_by_role("heading", name=f"Trace {tid}").wait_for(timeout=UI_TIMEOUT_MS)
    wait_for_app(page)
    page.wait_for_function("() => window.__rsKeysInstalled && window.__rsKeyMapJson")  # keys are live


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
        trace_heading(page, tids[0])
        page.keyboard.press("4")
        page.get_by_text("quality: 4").wait_for()
        page.keyboard.press("a")
        trace_heading(page, tids[1])
        # The rendering check: the model's markup is on the page as text, and none of it ran.
        assert page.get_by_text(EVIL, exact=True).count() == 1
        assert page.evaluate("() => window.pwned === undefined && !document.querySelector('img[src=\"x\"]')")
        page.keyboard.press("r")
        trace_heading(page, tids[2])
        page.keyboard.press("e")
        box = page.locator(".st-key-rv_edit_response textarea")
        box.wait_for()
        page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'TEXTAREA'")
        page.keyboard.press("Control+a")
        page.keyboard.type("I will not help with that, and here is why.")  # 'a', 'r', 'e' typed, not shortcuts
        page.keyboard.press("Control+Enter")
        trace_heading(page, tids[3])
        page.get_by_text("+I will not help with that, and here is why.").wait_for()
    with Session(eng) as s:
        anns = {a.trace_id: a for a in s.execute(select(Annotation)).scalars()}
        status = {t.id: t.status for t in s.execute(select(Trace)).scalars()}
    assert sorted(anns) == tids[:3]
    assert (anns[tids[0]].decision, anns[tids[0]].quality) == ("approve", 4)
    assert anns[tids[1]].decision == "reject"
    assert anns[tids[2]].decision == "needs_edit"
    assert anns[tids[2]].edited_response == "I will not help with that, and here is why."
    assert [status[t] for t in tids] == ["approved", "rejected", "approved", "pending"]
    with Session(eng) as s:
        assert s.get(Trace, tids[2]).response == "ok 2"  # the model's original is untouched
    eng.dispose()
