"""Real Chromium against `streamlit run` at 1440×900: the review screen keeps its shape. With 2,000-character
reasoning and after an edit, the next trace's prompt starts within the first 900 px and the actions are on screen
without scrolling; the edit's diff is one collapsed line; a new trace starts at the top even when the previous one
was scrolled; `r` asks for a reason before anything is saved; `?` opens a help panel."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.review import queues
from db.engine import make_engine
from db.models import Annotation
from tests.browser import (
    app_env,
    at_trace,
    chromium_available,
    chromium_page,
    edit_with_keys,
    shot,
    sign_in,
    streamlit_server,
)
from tests.factories import PASSWORD, make_traces, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]
LONG = " ".join(f"Step {i}: the request asks for something; weigh intent, ethics and harm before answering."
                for i in range(30))[:2000]
VIEWPORT = 900


def _box(page, css: str) -> dict:
    """The element's box relative to the viewport (what the user sees without scrolling)."""
    return page.locator(css).first.evaluate("e => { const r = e.getBoundingClientRect(); "
                                            "return {top: r.top, bottom: r.bottom}; }")


def test_layout_after_an_edit_with_long_reasoning(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    tids = make_traces(eng, 4, reasoning=LONG, responses=["x " * 600] * 4)
    queues.create_queue(eng, users["admin"], "kb", {}, overlap=1, members=[users["annotator"].id])
    with streamlit_server(app_env(sqlite_url, tmp_path / "home"), tmp_path / "logs") as base_url, \
            chromium_page(1440, VIEWPORT) as page:
        sign_in(page, base_url, "annotator", PASSWORD, "/review")
        at_trace(page, tids[0])
        edit_with_keys(page, "rv_edit_response", "I will not help with that.")
        at_trace(page, tids[1])
        shot(page, tmp_path, "review-after-edit")
        prompt, approve = _box(page, ".st-key-rv_prompt_box"), _box(page, ".st-key-rv_approve button")
        assert 0 <= prompt["top"] < VIEWPORT, prompt
        assert 0 <= approve["top"] and approve["bottom"] <= VIEWPORT, approve  # actions without scrolling
        assert _box(page, ".st-key-rv_response_box")["bottom"] <= VIEWPORT + 80  # the trace fits the screen
        summary = page.get_by_text("Your last edit (trace")
        summary.wait_for()
        assert not page.get_by_text("+I will not help with that.").is_visible()  # the diff stays collapsed
        summary.click()
        page.get_by_text("+I will not help with that.").wait_for()

        # Scrolled down on one trace, the next one still starts at the top.
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(300)
        page.keyboard.press("a")
        at_trace(page, tids[2])
        page.wait_for_timeout(300)
        assert 0 <= _box(page, ".st-key-rv_prompt_box")["top"] < VIEWPORT

        # `r` asks why; Ctrl+Enter in the comment box rejects with the reason.
        page.keyboard.press("r")
        page.get_by_text("Why reject?").wait_for()
        page.get_by_text("reasoning unsound or missing").click()
        box = page.locator(".st-key-rv_reject_comment textarea")
        box.click()
        page.keyboard.type("circular")
        page.keyboard.press("Control+Enter")
        at_trace(page, tids[3])

        page.keyboard.press("?")
        page.locator(".st-key-rv_help_panel").get_by_text("undo your last action, whatever it was").wait_for()
        shot(page, tmp_path, "review-help")
    with Session(eng) as s:
        anns = {a.trace_id: a for a in s.execute(select(Annotation)).scalars()}
    assert anns[tids[0]].edited_response == "I will not help with that."
    assert anns[tids[1]].decision == "approve"
    assert (anns[tids[2]].decision, anns[tids[2]].comment) == ("reject", "reasoning unsound or missing: circular")
    assert anns[tids[2]].reasoning_sound is False
    eng.dispose()
