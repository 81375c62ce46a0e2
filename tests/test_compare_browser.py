"""Real Chromium: sign in, open the compare page in blind mode, vote, and check the stored true identities.

The page runs as its own `streamlit run app/web/views/compare.py` script, so this test does not depend on the shell's
navigation. RATIONAL_SCREENSHOTS=DIR keeps the screenshots.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.auth import create_user
from db.engine import make_engine
from db.models import EvalOutput, PairVote
from evaluation.compare import a_on_left
from tests.browser import (
    ROOT,
    _bin,
    app_env,
    chromium_available,
    chromium_page,
    fill_text,
    free_port,
    process,
    shot,
    wait_for_app,
    wait_healthy,
)
from tests.test_compare_logic import make_pair_runs

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]


def test_blind_vote_in_chromium_stores_true_identities(sqlite_url, tmp_path):
    eng = make_engine(sqlite_url)
    voter = create_user(eng, "vera", "password123", "annotator").id
    a, b, pids = make_pair_runs(eng)
    with Session(eng) as s:
        outs = {(r, p): i for r, p, i in s.execute(select(EvalOutput.run_id, EvalOutput.prompt_id, EvalOutput.id))}
    env = app_env(sqlite_url, tmp_path / "home")
    port = free_port()
    cmd = [*_bin("streamlit"), "run", str(ROOT / "app" / "web" / "views" / "compare.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    log = tmp_path / "logs" / "streamlit.log"
    try:
        with process(cmd, env, log) as proc, chromium_page() as page:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, proc, log)
            page.goto(base + "/")
            wait_for_app(page)
            fill_text(page, "User name", "vera")
            page.get_by_label("Password", exact=True).fill("password123")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Compare runs").wait_for()
            wait_for_app(page)
            page.get_by_text("Blind vote", exact=True).click()
            page.get_by_role("button", name="Left is better").wait_for()
            wait_for_app(page)
            shot(page, tmp_path, "blind_vote")
            body = page.locator('[data-testid="stMain"]').inner_text()
            assert "REGRESSION" not in body and "run A" not in body  # nothing names the sides
            # vote "left" on the first two prompts; what was on the left decides what must be stored
            for pid in pids[:2]:
                left_is_a = a_on_left(voter, outs[(a, pid)], outs[(b, pid)])
                page.get_by_role("button", name="Left is better").click()
                page.get_by_text(f"You voted on {pids.index(pid) + 1} of 6 prompts").wait_for()
                wait_for_app(page)
                with Session(eng) as s:
                    v = s.execute(select(PairVote).where(PairVote.prompt_id == pid)).scalars().one()
                assert (v.voter_id, v.run_a_id, v.run_b_id) == (voter, a, b)
                assert (v.output_a_id, v.output_b_id) == (outs[(a, pid)], outs[(b, pid)])
                assert v.shown_choice == "left" and v.a_on_left is left_is_a
                assert v.choice == ("a" if left_is_a else "b")
            page.get_by_role("button", name="Both bad").click()
            page.get_by_text("You voted on 3 of 6 prompts").wait_for()
            shot(page, tmp_path, "after_votes")
        with Session(eng) as s:
            assert s.execute(select(PairVote.choice).where(PairVote.prompt_id == pids[2])).scalar_one() == "both_bad"
    finally:
        eng.dispose()
