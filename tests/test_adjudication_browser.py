"""Real Chromium against `streamlit run`: a reviewer settles disputed traces one at a time with the keyboard,
like Prodigy's review recipe. The annotators' verdicts sit in columns under their names; `1` takes an annotator's
edit as the final text, `e` starts the reviewer's own edit and Ctrl+Enter approves it, `r` rejects, `n` moves on."""
from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from curation.review import annotations, claims, queues, reading
from db.engine import make_engine
from db.models import Trace
from tests.browser import (
    UI_TIMEOUT_MS,
    app_env,
    at_trace,
    chromium_available,
    chromium_page,
    edit_with_keys,
    shot,
    sign_in,
    streamlit_server,
)
from tests.factories import PASSWORD, make_traces, make_user, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]


def _dispute(eng, users) -> list[int]:
    """Three traces where alice edits and bea rejects: each needs a reviewer."""
    alice, bea = make_user(eng, "annotator", "alice"), make_user(eng, "annotator", "bea")
    tids = make_traces(eng, 3)
    q = queues.create_queue(eng, users["admin"], "pair", {}, overlap=2, members=[alice.id, bea.id])
    while (c := claims.claim_next(eng, alice, q.id)) is not None:
        annotations.submit_annotation(eng, alice, c.trace_id, decision="needs_edit", trace_version=c.trace_version,
                                      queue_id=q.id, edited_response=f"alice's safer answer {c.trace_id}")
    while (c := claims.claim_next(eng, bea, q.id)) is not None:
        annotations.submit_annotation(eng, bea, c.trace_id, decision="reject", trace_version=c.trace_version,
                                      queue_id=q.id, comment="unsafe")
    return tids


def test_one_at_a_time_with_keys_and_the_reviewers_own_edit(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    tids = _dispute(eng, users)
    with streamlit_server(app_env(sqlite_url, tmp_path / "home"), tmp_path / "logs") as base_url, \
            chromium_page(1440, 900) as page:
        sign_in(page, base_url, "reviewer", PASSWORD, "/adjudication")

        at_trace(page, tids[0])
        assert page.get_by_role("heading", name=f"Trace {tids[1]}").count() == 0  # one trace on the page
        page.get_by_text("3 disputed traces").wait_for()
        page.get_by_text("alice · needs_edit").wait_for()  # verdicts labelled by annotator
        page.get_by_text("bea · reject").wait_for()
        shot(page, tmp_path, "adjudication")
        page.keyboard.press("1")  # alice's edit is the final text
        page.get_by_text("Final text: alice's edit (1)").wait_for()
        page.keyboard.press("a")
        at_trace(page, tids[1])
        page.keyboard.press("n")  # later
        at_trace(page, tids[2])
        edit_with_keys(page, "adj_own_response", "The reviewer's own answer.")  # `e`: my own edit
        at_trace(page, tids[1])  # the one left for later comes back
        page.keyboard.press("r")
        page.get_by_text("Nothing waits for adjudication.").wait_for(timeout=UI_TIMEOUT_MS)
    final = {t: reading.final_text(eng, users["reviewer"], t) for t in tids}
    assert (final[tids[0]]["status"], final[tids[0]]["response"]) == ("approved", f"alice's safer answer {tids[0]}")
    assert (final[tids[2]]["status"], final[tids[2]]["response"]) == ("approved", "The reviewer's own answer.")
    assert final[tids[1]]["status"] == "rejected"
    with Session(eng) as s:
        assert {s.get(Trace, t).decided_by for t in tids} == {users["reviewer"].id}
    eng.dispose()
