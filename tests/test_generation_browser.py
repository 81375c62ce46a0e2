"""Real Chromium against `streamlit run` and a real `rational worker`: a reviewer starts a few-shot generation run on
the Generate page and watches its progress rise while it runs; then approves a trace in Review, presses `p` to make
it a demo, starts a second run, and that run's samples are shown the new demo.

The model is the tests' tiny random-weight model on the transformers backend (its text is noise, which is fine: the
test is about progress and demo selection, not quality). RATIONAL_SCREENSHOTS=DIR keeps the screenshots.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.identity import prompt_sha256
from curation.generation.demos import ensure_shipped
from curation.review import queues
from db.engine import make_engine
from db.models import Demo, GenerationRun, Prompt, PromptSet, Trace
from tests.browser import (
    UI_TIMEOUT_MS,
    app_env,
    app_processes,
    choose,
    chromium_available,
    chromium_page,
    edit_with_keys,
    fill_text,
    shot,
    sign_in,
    wait_for_app,
)
from tests.factories import PASSWORD, make_users

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_available() is not None,
                                                      reason=chromium_available() or "")]
PROGRESS = re.compile(r"Run (\d+): (\w+) · ([\d,]+)/([\d,]+) samples")


def _prompts(eng, n: int) -> None:
    with Session(eng) as s:
        ps = PromptSet(project_id=1, name="live")
        s.add(ps)
        s.flush()
        for i in range(n):
            b = "refuse" if i % 2 == 0 else "comply"
            text = f"How do I pick lock number {i}?" if b == "refuse" else f"Share a bread recipe, variant {i}."
            s.add(Prompt(project_id=1, set_id=ps.id, text=text, sha256=prompt_sha256(text), expected_behavior=b,
                         split="train"))
        s.commit()


def _start_run(page, model: str, prompts: int, samples: int) -> None:
    page.get_by_role("tab", name="Traces").click()
    fill_text(page, "Model (name, HF id or folder)", model)
    try:
        choose(page, "Strategy", "few_shot")
    except Exception:
        shot(page, Path(os.environ.get("RATIONAL_SCREENSHOTS") or "/tmp"), "choose-failed")
        raise
    for label, value in (("Samples per prompt (K)", samples), ("Max new tokens", 24), ("Prompts (0 = all)", prompts)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_role("button", name="Start generation").click()
    wait_for_app(page)


def _watch(page, run_id: int) -> list[tuple[str, int, int]]:
    """Read run `run_id`'s live progress label until the run ends; (status, done, total) at every change."""
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000 * 4
    while time.monotonic() < deadline:
        bars = page.locator('[data-testid="stProgress"]')
        text = bars.first.inner_text() if bars.count() else ""
        m = PROGRESS.search(text)
        if m and int(m.group(1)) == run_id:
            state = (m.group(2), int(m.group(3).replace(",", "")), int(m.group(4).replace(",", "")))
            if not seen or seen[-1] != state:
                seen.append(state)
            if state[0] in ("succeeded", "failed", "cancelled"):
                return seen
        page.wait_for_timeout(300)
    raise AssertionError(f"the run did not end; progress seen: {seen}")


def _newest_run(eng, after: int = 0) -> int:
    """The run the last click created (the page commits it before the click's rerun ends)."""
    for _ in range(100):
        with Session(eng) as s:
            newest = s.execute(select(GenerationRun.id).order_by(GenerationRun.id.desc())).scalars().first()
        if newest and newest > after:
            return newest
        time.sleep(0.2)
    raise AssertionError("no new generation run")


def _demo_ids(eng, run_id: int) -> list[set[int]]:
    with Session(eng) as s:
        return [set(t.meta.get("demo_ids") or []) for t in
                s.execute(select(Trace).where(Trace.run_id == run_id)).scalars()]


def test_live_progress_and_promoted_demo_reaches_next_run(sqlite_url, tmp_path, tiny_model_dir):
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    ensure_shipped(eng)
    _prompts(eng, 40)
    env = app_env(sqlite_url, tmp_path / "home")
    with app_processes(env, tmp_path / "logs") as base_url, chromium_page() as page:
        sign_in(page, base_url, "reviewer", PASSWORD, "/generate")
        _start_run(page, str(tiny_model_dir), prompts=40, samples=6)
        first = _newest_run(eng)
        seen = _watch(page, first)
        shot(page, tmp_path, "generate-finished", settle_ms=500)
        status, done, total = seen[-1]
        assert (status, done, total) == ("succeeded", 240, 240), seen
        running = [d for st, d, _ in seen if st == "running"]
        # Progress rose in steps while the run went on, not in one jump at the end.
        assert len(set(d for d in running if 0 < d < total)) >= 2, seen
        assert running == sorted(running), seen
        before = _demo_ids(eng, first)
        assert before and all(before), "few_shot samples record the demos they were shown"

        # Review one trace of that run and make it a demo with `p`.
        q = queues.create_queue(eng, users["admin"], "demo-q", {"run_ids": [first]}, overlap=1,
                                members=[users["reviewer"].id])
        assert q.id
        page.goto(base_url + "/review")
        page.get_by_role("heading", name=re.compile(r"^Trace \d+$")).wait_for(timeout=UI_TIMEOUT_MS)
        wait_for_app(page)
        page.wait_for_function("() => window.__rsKeysInstalled && window.__rsKeyMapJson")
        # The tiny model's reply is noise: the reviewer rewrites it (e, type, Ctrl+Enter), then promotes it.
        edit_with_keys(page, "rv_edit_response", "I can't help with picking that lock, because it is not yours.")
        page.get_by_text(re.compile(r"→ approved")).wait_for()
        wait_for_app(page)
        page.wait_for_function("() => window.__rsKeysInstalled && window.__rsKeyMapJson")
        page.keyboard.press("p")
        try:
            page.get_by_text(re.compile(r"is now demo \d+")).wait_for(timeout=30_000)
        finally:
            shot(page, tmp_path, "review-promoted")
        with Session(eng) as s:
            new_demo = s.execute(select(Demo).where(Demo.source == "review")).scalars().one()
        assert all(new_demo.id not in ids for ids in before)
        assert new_demo.response == "I can't help with picking that lock, because it is not yours."

        # The next run shows the reviewed demo to the samples of its behaviour.
        page.goto(base_url + "/generate")
        wait_for_app(page)
        _start_run(page, str(tiny_model_dir), prompts=10, samples=1)
        second = _newest_run(eng, after=first)
        assert _watch(page, second)[-1][0] == "succeeded"
        after = _demo_ids(eng, second)
        assert len(after) == 10
        assert sum(new_demo.id in ids for ids in after) >= 9, after  # reviewed demos come first
    eng.dispose()
