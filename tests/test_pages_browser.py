"""Real Chromium against `streamlit run` at 1440×900, signed in as an admin, with the services a page may call
down: Argilla points at a port where nothing listens, and no worker runs (jobs stay queued). Every page is one click
away in the sidebar (no "View more"), in workflow order, and none shows an exception or a traceback; the pages that
call a missing service say so in one line instead."""
from __future__ import annotations

import pytest

from app.web.navigation import menu
from core.markdown import JOINER
from curation.review import annotations, claims, queues
from db.engine import make_engine
from tests.browser import (
    app_env,
    chromium_available,
    chromium_page,
    free_port,
    page_problems,
    shot,
    sign_in,
    streamlit_server,
    visit_every_page,
)
from tests.factories import PASSWORD, make_traces, make_user, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]


def test_every_page_is_one_click_away_and_none_shows_a_traceback(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    bea = make_user(eng, "annotator", "bea")
    tids = make_traces(eng, 3, auto_labels={0: [("decision", "refuse")]})
    q = queues.create_queue(eng, users["admin"], "pair", {}, overlap=2, members=[users["annotator"].id, bea.id])
    for who, decision in ((users["annotator"], "approve"), (bea, "reject")):  # disputed: adjudication has work
        c = claims.claim_next(eng, who, q.id)
        annotations.submit_annotation(eng, who, c.trace_id, decision=decision, trace_version=c.trace_version,
                                      queue_id=q.id)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    env = app_env(sqlite_url, tmp_path / "home", ARGILLA_API_URL=dead, ARGILLA_API_KEY="not-a-real-key")
    problems: dict[str, list[str]] = {}
    with streamlit_server(env, tmp_path / "logs") as base_url, chromium_page(1440, 900) as page:
        sign_in(page, base_url, "admin", PASSWORD, "/")

        def check(title: str) -> None:
            shot(page, tmp_path, "page-" + title.lower().replace(" ", "-").replace("&", "and"))
            if page_problems(page):
                problems[title] = page_problems(page)

        visited = visit_every_page(page, check)
        page.get_by_role("link", name="Argilla", exact=True).click()
        # The URL is data in the message: shown as text, kept from being linked by an invisible word joiner.
        page.get_by_text(f"Cannot reach {dead.replace('://', ':' + JOINER + '//')}").wait_for()
        page.get_by_text("the server does not answer").first.wait_for()
        assert page.get_by_role("button", name="Push to Argilla").is_disabled()  # no push into the void
    expected = [v.title for views in menu("admin").values() for v in views]
    assert visited == expected  # every page, in the menu's workflow order
    assert expected.index("Generate") < expected.index("Review") < expected.index("Export & train") \
        < expected.index("Evaluate") < expected.index("Compare")
    assert problems == {}
    assert tids
    eng.dispose()
