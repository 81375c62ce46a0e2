"""Shared pieces for browser tests: a free port, `streamlit run` and `rational worker` subprocesses, and Chromium.

Use them as context managers so every subprocess is killed (its whole process group) even when a test fails:

    with app_processes(env, tmp_path) as base_url, chromium_page() as page:
        page.goto(base_url + "/import_prompts")
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "web" / "streamlit_app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
START_TIMEOUT_S = 180  # the CI machine is small and shared: generous, and only a hang guard
UI_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(database_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment for the app and worker subprocesses: one database, one RATIONAL_HOME, no telemetry."""
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "RATIONAL_HOME": str(home), "PYTHONUNBUFFERED": "1",
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}, **extra)
    return env


def _bin(name: str) -> list[str]:
    exe = Path(sys.executable).with_name(name)
    return [str(exe)] if exe.exists() else [sys.executable, "-m", name]


def log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A subprocess in its own process group, stopped (TERM, then KILL) on exit; output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass


def wait_healthy(base_url: str, proc: subprocess.Popen, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(base_url + "/_stcore/health", timeout=5) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"streamlit not healthy after {timeout_s:.0f} s:\n{log_tail(log)}")


@contextmanager
def streamlit_server(env: dict[str, str], logs: Path, port: int | None = None) -> Iterator[str]:
    """`streamlit run app/streamlit_app.py` on 127.0.0.1 and a free port; yields the base URL once healthy."""
    port = port or free_port()
    cmd = [*_bin("streamlit"), "run", str(APP), "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    log = logs / f"streamlit-{port}.log"
    with process(cmd, env, log) as proc:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, proc, log)
        yield base_url


@contextmanager
def worker(env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen]:
    """`rational worker` (as `python -m app.cli worker`) on the same database."""
    with process([sys.executable, "-m", "app.cli", "worker"], env, logs / "worker.log") as proc:
        yield proc


@contextmanager
def app_processes(env: dict[str, str], logs: Path) -> Iterator[str]:
    """The web app and one worker; yields the app's base URL."""
    with worker(env, logs), streamlit_server(env, logs) as base_url:
        yield base_url


def chromium_available() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"{CHROMIUM} not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright not installed"
    return None


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A Playwright page in the system Chromium (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


# -- driving Streamlit widgets ------------------------------------------------------------------------------
def wait_for_app(page) -> None:
    """Wait until the current script run has finished (Streamlit's running indicator is gone)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=UI_TIMEOUT_MS)
    page.wait_for_function(
        """() => {
            const s = document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state');
            return s && !['initial', 'running', 'rerunRequested'].includes(s);
        }""",
        timeout=UI_TIMEOUT_MS)


def choose(page, label: str, option: str, attempts: int = 10) -> None:
    """Pick `option` in the st.selectbox labelled `label` (a combobox with a listbox of options).

    A rerun that is still drawing can replace the widget and close a list that was just opened, so opening is
    retried until the option shows.
    """
    combo = page.get_by_role("combobox", name=label, exact=True)
    wanted = page.get_by_role("option", name=option, exact=True)
    for _ in range(attempts):
        wait_for_app(page)
        combo.click()
        try:
            wanted.wait_for(state="visible", timeout=5_000)
            break
        except Exception:  # playwright's TimeoutError: the list did not open or was redrawn away
            page.keyboard.press("Escape")
    wanted.click()
    wait_for_app(page)


def metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def fill_text(page, label: str, value: str) -> None:
    """Type into the st.text_input labelled `label` and commit it (Enter)."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_for_app(page)


def sign_in(page, base_url: str, name: str, password: str, path: str = "/") -> None:
    """Open `path` and sign in through the form (issue 4: every page needs a signed-in user). A signed cookie
    keeps the login across later page.goto() calls."""
    page.goto(base_url + path)
    wait_for_app(page)
    page.get_by_label("User name", exact=True).fill(name)
    pw = page.get_by_role("textbox", name="Password", exact=True)
    pw.fill(password)
    pw.press("Enter")
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=UI_TIMEOUT_MS)
    wait_for_app(page)


def shot(page, tmp_path: Path, name: str, settle_ms: int = 0) -> None:
    """Screenshot for people, not an assert; RATIONAL_SCREENSHOTS=DIR keeps a copy."""
    if settle_ms:
        page.wait_for_timeout(settle_ms)  # let charts and tables paint
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("RATIONAL_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(path, os.path.join(keep, path.name))


def visit_every_page(page, on_page=None) -> list[str]:
    """Click every page's link in the sidebar, in menu order, and wait for each to finish drawing; `on_page(title)`
    runs on each. Fails when a link is hidden behind Streamlit's "View more" (every page must be one click away).
    Returns the titles visited."""
    import re

    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.wait_for()
    assert nav.get_by_text(re.compile(r"View \d+ more")).count() == 0, "pages hidden behind 'View more'"
    links = nav.locator('[data-testid="stSidebarNavLink"]')
    titles = []
    for i in range(links.count()):
        link = links.nth(i)
        title = link.inner_text().strip().split("\n")[-1].strip()  # after the icon's ligature name
        titles.append(title)
        link.click()
        wait_for_app(page)
        page.wait_for_timeout(300)  # fragments and charts finish their first paint
        wait_for_app(page)
        if on_page is not None:
            on_page(title)
    return titles


def page_problems(page) -> list[str]:
    """What a user must never see on a page: a Python exception box or traceback text."""
    found = []
    if page.locator('[data-testid="stException"]').count():
        found.append("exception box: " + page.locator('[data-testid="stException"]').first.inner_text()[:300])
    if page.get_by_text("Traceback (most recent call last)").count():
        found.append("traceback text")
    return found


def at_trace(page, tid: int) -> None:
    """Wait until trace `tid` is the one on screen and its keyboard shortcuts are live."""
    page.get_by_role("heading", name=f"Trace {tid}").wait_for(timeout=UI_TIMEOUT_MS)
    wait_for_app(page)
    page.wait_for_function("() => window.__rsKeysInstalled && window.__rsKeyMapJson")


def edit_with_keys(page, textarea_key: str, text: str, *, open_key: str = "e") -> None:
    """Open an edit with `open_key`, replace the focused text box's text by typing (letters that are shortcuts
    elsewhere are typed, not pressed), and save with Ctrl+Enter."""
    page.keyboard.press(open_key)
    page.locator(f".st-key-{textarea_key} textarea").wait_for()
    page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'TEXTAREA'")
    page.keyboard.press("Control+a")
    page.keyboard.type(text)
    page.keyboard.press("Control+Enter")
