"""Skip and undo in review queues (SQLite and PostgreSQL; the page in real Chromium): a skipped trace comes back at
the end of the skipper's queue instead of staying in review forever, `u` undoes the last action whatever it was,
and queue progress counts the skipped traces."""
from __future__ import annotations

import pytest

from curation.review import annotations, claims, queues
from tests.browser import UI_TIMEOUT_MS, app_env, at_trace, chromium_available, chromium_page, sign_in, streamlit_server
from tests.factories import PASSWORD, make_traces, make_user, make_users


def _decide(engine, user, qid) -> list[int]:
    seen = []
    while (c := claims.claim_next(engine, user, qid)) is not None:
        seen.append(c.trace_id)
        annotations.submit_annotation(engine, user, c.trace_id, decision="approve", trace_version=c.trace_version,
                                      queue_id=qid)
    return seen


def test_a_skipped_trace_comes_back_last_and_gets_decided(engine):
    users = make_users(engine)
    a1, a2 = users["annotator"], make_user(engine, "annotator")
    tids = make_traces(engine, 3)
    q = queues.create_queue(engine, users["admin"], "pair", {}, overlap=2, members=[a1.id, a2.id])
    first = claims.claim_next(engine, a1, q.id)
    claims.skip(engine, a1, first.trace_id)
    assert queues.queue_progress(engine, users["admin"], q.id)["skipped"] == 1
    order = _decide(engine, a1, q.id)
    assert order[-1] == first.trace_id and sorted(order) == sorted(tids)  # the skip came back, at the end
    _decide(engine, a2, q.id)
    prog = queues.queue_progress(engine, users["admin"], q.id)
    assert (prog["done"], prog["skipped"]) == (3, 0)  # nothing stuck in review


def test_undo_of_a_skip_gives_the_trace_back_unless_others_filled_it(engine):
    users = make_users(engine)
    a1, a2 = users["annotator"], make_user(engine, "annotator")
    make_traces(engine, 2)
    q = queues.create_queue(engine, users["admin"], "solo", {}, overlap=1, members=[a1.id, a2.id])
    c = claims.claim_next(engine, a1, q.id)
    claims.skip(engine, a1, c.trace_id)
    claims.unskip(engine, a1, c.trace_id)
    assert claims.claim_next(engine, a1, q.id).trace_id == c.trace_id  # held again
    claims.skip(engine, a1, c.trace_id)
    other = claims.claim_next(engine, a2, q.id)
    assert other.trace_id == c.trace_id  # the skipped trace went to someone else
    from core.errors import ConflictError

    with pytest.raises(ConflictError, match="taken by others"):
        claims.unskip(engine, a1, c.trace_id)


@pytest.mark.browser
@pytest.mark.skipif(chromium_available() is not None, reason=chromium_available() or "")
def test_skip_then_undo_then_the_skip_returns_in_the_browser(sqlite_url, tmp_path):
    from db.engine import make_engine

    eng = make_engine(sqlite_url)
    users = make_users(eng)
    tids = make_traces(eng, 2)
    queues.create_queue(eng, users["admin"], "kb", {}, overlap=1, members=[users["annotator"].id])
    with streamlit_server(app_env(sqlite_url, tmp_path / "home"), tmp_path / "logs") as base_url, \
            chromium_page(1440, 900) as page:
        sign_in(page, base_url, "annotator", PASSWORD, "/review")

        at_trace(page, tids[0])
        page.keyboard.press("s")
        at_trace(page, tids[1])
        page.keyboard.press("u")  # undoes the skip, not an earlier annotation
        at_trace(page, tids[0])
        page.get_by_text(f"undone: trace {tids[0]} is back").wait_for()
        page.keyboard.press("s")
        at_trace(page, tids[1])
        page.keyboard.press("a")
        at_trace(page, tids[0])  # nothing new left: the skipped trace comes back
        page.keyboard.press("a")
        page.get_by_text("Nothing left for you in this queue").wait_for(timeout=UI_TIMEOUT_MS)
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from db.models import Trace

    with Session(eng) as s:
        assert {t.status for t in s.execute(select(Trace)).scalars()} == {"approved"}
    eng.dispose()
