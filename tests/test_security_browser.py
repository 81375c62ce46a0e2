"""Real Chromium against `streamlit run`: a session cookie copied before sign-out does not sign in afterwards, and
names and harm categories that hold Markdown (an image pointing at a URL, KaTeX) are shown as text: the browser
never requests the URL."""
from __future__ import annotations

import pytest

from curation.review import queues
from curation.review.preferences import save_settings
from db.engine import make_engine
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
BEACON = "http://127.0.0.1:9/beacon"
QUEUE = f"q ![queue]({BEACON}-queue.png) www.evil.example mail@evil.example https://evil.example/x"
CATEGORY = f"cyber $x^2$ ![cat]({BEACON}-category.png)"


def test_sign_out_ends_the_cookie_and_data_is_never_markdown(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    make_traces(eng, 2, category=CATEGORY)
    queues.create_queue(eng, users["admin"], QUEUE, {}, overlap=1, members=[users["annotator"].id])
    save_settings(eng, users["annotator"], [CATEGORY], 0)
    env = app_env(sqlite_url, tmp_path / "home")
    requested: list[str] = []
    with streamlit_server(env, tmp_path / "logs") as base_url, chromium_page() as page:
        page.on("request", lambda r: requested.append(r.url))
        sign_in(page, base_url, "annotator", PASSWORD, "/review")
        page.get_by_text("Content warning: cyber $x^2$", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
        assert page.locator("img[alt='cat'], .katex").count() == 0

        # The admin's Queues page: the queue name is a heading of plain text.
        admin_ctx = page.context.browser.new_context()
        admin = admin_ctx.new_page()
        admin.on("request", lambda r: requested.append(r.url))
        sign_in(admin, base_url, "admin", PASSWORD, "/queues")
        heading = admin.get_by_role("heading", name="q ![queue](")
        heading.wait_for(timeout=UI_TIMEOUT_MS)
        # Shown as written (an invisible word joiner keeps URLs and addresses from being linked).
        assert heading.inner_text().replace("\u2060", "").strip() == QUEUE
        assert admin.locator("img[alt='queue']").count() == 0
        assert admin.locator("a[href*='evil.example']").count() == 0  # bare URLs and addresses stay text

        # Sign out, then replay the cookie taken before in a fresh browser context: the sign-in form comes back.
        cookies = [c for c in page.context.cookies() if c["name"] == "rs_session"]
        assert cookies, "signing in set no session cookie"
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for(timeout=UI_TIMEOUT_MS)
        replay_ctx = page.context.browser.new_context()
        replay_ctx.add_cookies(cookies)
        replay = replay_ctx.new_page()
        replay.goto(base_url + "/review")
        wait_for_app(replay)
        replay.get_by_role("heading", name="Sign in").wait_for(timeout=UI_TIMEOUT_MS)
        assert replay.get_by_text("Signed in as annotator").count() == 0
    assert not [u for u in requested if u.startswith(BEACON)], requested
    eng.dispose()


def test_prompt_downloads_cannot_run_formulas_in_a_spreadsheet(sqlite_url, tmp_path):
    """The Prompts page's download neutralises formula-like cells; Streamlit's own table download, which writes
    them verbatim, is not offered."""
    eng = make_engine(sqlite_url)
    make_users(eng)
    make_traces(eng, 1, set_name="evil")
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from db.models import Prompt

    with Session(eng) as s:
        s.execute(update(Prompt).values(text='=HYPERLINK("http://127.0.0.1:9/x","click")', category="@SUM(1)"))
        s.commit()
    with streamlit_server(app_env(sqlite_url, tmp_path / "home"), tmp_path / "logs") as base_url, \
            chromium_page() as page:
        sign_in(page, base_url, "admin", PASSWORD, "/prompts")
        page.get_by_role("button", name="Download this page as CSV").wait_for(timeout=UI_TIMEOUT_MS)
        page.locator('[data-testid="stDataFrame"]').hover()
        assert not page.locator('button[aria-label="Download as CSV"]').is_visible()
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download this page as CSV").click()
        text = open(dl.value.path(), encoding="utf-8").read()
    assert "'=HYPERLINK(" in text and "'@SUM(1)" in text
    assert not any(line.startswith(("=", "@")) or ",=" in line or ",@" in line for line in text.splitlines())
    eng.dispose()
