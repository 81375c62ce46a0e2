"""Real Chromium against `streamlit run`: in Browse a click on a table row opens that trace, with its final text
and its history as a readable timeline (who, what, the edit as a diff), not raw JSON."""
from __future__ import annotations

import pytest

from curation.review import annotations, claims, queues
from db.engine import make_engine
from tests.browser import UI_TIMEOUT_MS, app_env, chromium_available, chromium_page, shot, sign_in, streamlit_server
from tests.factories import PASSWORD, make_traces, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]
ROW_PX = 35  # st.dataframe's row height (header included), at the default theme


def test_row_click_opens_the_trace_and_its_timeline(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    tids = make_traces(eng, 3, responses=["alpha", "beta", "gamma"])
    q = queues.create_queue(eng, users["admin"], "solo", {}, overlap=1, members=[users["annotator"].id])
    for _ in tids:
        c = claims.claim_next(eng, users["annotator"], q.id)
        kw = {"edited_response": "beta, but safer"} if c.trace_id == tids[1] else {}
        annotations.submit_annotation(eng, users["annotator"], c.trace_id, trace_version=c.trace_version,
                                      queue_id=q.id, decision="needs_edit" if kw else "approve", **kw)
    with streamlit_server(app_env(sqlite_url, tmp_path / "home"), tmp_path / "logs") as base_url, \
            chromium_page(1440, 900) as page:
        sign_in(page, base_url, "reviewer", PASSWORD, "/browse")
        page.get_by_text("3 traces match").wait_for()
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.wait_for()
        page.wait_for_timeout(500)  # the grid paints on a canvas after the element appears
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 14, box["y"] + ROW_PX * 2 + ROW_PX / 2)  # row 2's selection cell
        page.get_by_role("heading", name=f"Trace {tids[1]}").wait_for(timeout=UI_TIMEOUT_MS)
        timeline = page.locator(".st-key-br_timeline")
        timeline.get_by_text("annotator · annotation create").wait_for()
        timeline.get_by_text("+beta, but safer").wait_for()  # the edit as a diff
        timeline.get_by_text("status: pending → approved").first.wait_for()
        assert page.get_by_text("Response (final, edited)").count() == 1
        assert page.get_by_text('"edited_response"').count() == 0  # no raw JSON
        shot(page, tmp_path, "browse-trace")
    eng.dispose()
