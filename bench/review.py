"""Review benchmark.

1. Server side: a database with 100k traces in one queue; time "submit annotation + claim next" (the work behind
   one keypress) for one annotator, p50/p95, on SQLite and on PostgreSQL. Goal: p95 <= 50 ms.
2. Browser: real Chromium against `streamlit run` at 1440x900; time keypress -> next trace painted over 50 items
   with 2,000-character reasoning, p50/p95: `a` (approve), Ctrl+Enter saving an edit, and `a` on the trace right
   after an edit (the page then carries the edit's diff line). Goal: p95 <= 300 ms.

    .venv/bin/python bench/review.py [--traces 100000] [--iterations 300] [--items 50] [--no-pg] [--no-browser]

PostgreSQL: RATIONAL_BENCH_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test); a scratch
database is created and dropped.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from curation.review import annotations, claims, queues
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from tests.factories import PASSWORD, make_traces, make_user  # noqa: E402

PG_URL = os.environ.get("RATIONAL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fill(eng, n: int):
    t0 = time.perf_counter()
    admin = make_user(eng, "admin", "bench_admin")
    ann = make_user(eng, "annotator", "bench_annotator")
    make_traces(eng, n, set_name="bench", batch=10_000,
                auto_labels={i: [("refusal", "complied")] for i in range(0, n, 97)})
    q = queues.create_queue(eng, admin, "bench", {}, overlap=1, members=[ann.id])
    print(f"  filled {n} traces + queue in {time.perf_counter() - t0:.1f} s", flush=True)
    return admin, ann, q


def server_side(eng, label: str, n: int, iterations: int) -> dict:
    admin, ann, q = fill(eng, n)
    c = claims.claim_next(eng, ann, q.id)
    times = []
    for i in range(iterations):
        t0 = time.perf_counter()
        annotations.submit_annotation(eng, ann.id, c.trace_id, decision="approve" if i % 3 else "reject",
                                 trace_version=c.trace_version, queue_id=q.id, quality=3, behavior_label="refuse")
        c = claims.claim_next(eng, ann.id, q.id)
        times.append((time.perf_counter() - t0) * 1000)
    res = {"db": label, "traces": n, "iterations": iterations, "p50_ms": pct(times, 50), "p95_ms": pct(times, 95),
           "mean_ms": statistics.mean(times)}
    print(f"  {label}: submit+claim p50 {res['p50_ms']:.1f} ms, p95 {res['p95_ms']:.1f} ms "
          f"(mean {res['mean_ms']:.1f}, n={iterations})", flush=True)
    return res


LONG_REASONING = " ".join(f"Step {i}: weigh the request's intent, the ethics and the possible harm before answering."
                          for i in range(40))[:2000]
NEXT_PAINTED = """(cur) => { const h = [...document.querySelectorAll('h3')].find(x => x.textContent.startsWith('Trace '));
                             return h && h.textContent.trim() !== cur ? performance.now() : false; }"""


def browser(sqlite_url: str, items: int, workdir: Path, edit_every: int = 5) -> dict:
    from tests.browser import app_env, chromium_page, streamlit_server, wait_for_app

    eng = make_engine(sqlite_url)
    admin = make_user(eng, "admin", "bench_admin2")
    who = make_user(eng, "annotator", "bench_keys")
    make_traces(eng, items + 5, set_name="bench_keys", reasoning=LONG_REASONING)
    queues.create_queue(eng, admin, "keys", {"set_names": ["bench_keys"]}, overlap=1, members=[who.id])
    env = app_env(sqlite_url, workdir / "home")
    lat: dict[str, list[float]] = {"approve": [], "save edit": [], "approve after an edit": []}
    with streamlit_server(env, workdir / "logs") as base, chromium_page(1440, 900) as page:
        page.goto(base + "/review")
        wait_for_app(page)
        page.get_by_label("User name", exact=True).fill(who.username)
        pw = page.get_by_role("textbox", name="Password", exact=True)
        pw.fill(PASSWORD)
        pw.press("Enter")
        wait_for_app(page)
        after_edit = False
        for i in range(items):
            h = page.locator("h3", has_text="Trace ").first
            h.wait_for()
            wait_for_app(page)
            page.wait_for_function("() => window.__rsKeysInstalled && window.__rsKeyMapJson")
            current = h.inner_text().strip()
            if i % edit_every == edit_every - 1:
                page.keyboard.press("e")
                page.locator(".st-key-rv_edit_response textarea").wait_for()
                page.wait_for_function("() => document.activeElement?.tagName === 'TEXTAREA'")
                page.keyboard.type(" (edited)")
                page.keyboard.press("Control+Enter")
                kind, after_edit = "save edit", True
            else:
                page.keyboard.press("a")
                kind, after_edit = ("approve after an edit" if after_edit else "approve"), False
            painted = page.wait_for_function(NEXT_PAINTED, arg=current, polling="raf").json_value()
            lat[kind].append(painted - page.evaluate("() => window.__rsLastKeyAt"))
    eng.dispose()
    every = [x for xs in lat.values() for x in xs]
    res = {"items": items, "p50_ms": pct(every, 50), "p95_ms": pct(every, 95), "mean_ms": statistics.mean(every),
           "by_key": {k: {"n": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for k, v in lat.items() if v}}
    print(f"  chromium keypress -> next trace painted (2,000-char reasoning): p50 {res['p50_ms']:.0f} ms, "
          f"p95 {res['p95_ms']:.0f} ms (mean {res['mean_ms']:.0f}, n={items})", flush=True)
    for k, v in res["by_key"].items():
        print(f"    {k}: p50 {v['p50_ms']:.0f} ms, p95 {v['p95_ms']:.0f} ms (n={v['n']})", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rs_bench_review_"))
    os.environ["RATIONAL_HOME"] = str(work / "home")
    sqlite_url = f"sqlite:///{work / 'bench.db'}"
    eng = make_engine(sqlite_url)
    upgrade(eng)
    print("SQLite", flush=True)
    server_side(eng, "sqlite", args.traces, args.iterations)
    eng.dispose()
    if not args.no_pg:
        print("PostgreSQL", flush=True)
        admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
        name = f"rs_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            pg = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
            upgrade(pg)
            server_side(pg, "postgresql", args.traces, args.iterations)
            pg.dispose()
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if not args.no_browser:
        print("Chromium (SQLite database above, 100k traces + the keyboard queue)", flush=True)
        browser(sqlite_url, args.items, work)


if __name__ == "__main__":
    main()
