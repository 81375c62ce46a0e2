"""Scale: import, Browse, claim + submit and export at 100k and 1M prompts and traces, SQLite and PostgreSQL.

    .venv/bin/python bench/scale.py [--sizes 100000,1000000] [--no-pg] [--iterations 200]

Each (database, size) runs in a fresh child process (spawn) on a fresh database:
1. import N synthetic prompts from CSV through PromptImporter (rows/s; baseline: the same rows by executemany, at
   the smaller size, side by side in the same process tree, from bench/import_export.py);
2. one trace per prompt (INSERT ... SELECT, then the statistics refresh a generation run ends with: setup);
3. Browse: `reading.browse` pages (first, middle, last, and filtered by status and set), p50/p95 ms;
4. a review queue over every trace, then claim + submit for one annotator, p50/p95 ms;
5. every trace approved (one UPDATE, setup), then `create_export` of all N as SFT JSONL (rows/s).
The child's peak RSS after each step shows whether memory stays flat from 100k to 1M.
Goals (the scale issue): import >= 20k rows/s, claim + submit p95 <= 50 ms at 1M, export 1M rows in < 60 s.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.import_export import FreshDatabase, measure, write_files  # noqa: E402

GOALS = {"import_rows_per_s": 20_000, "claim_submit_p95_ms": 50.0, "export_1m_seconds": 60.0}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _child(url: str, csv_path: str, n: int, iterations: int, work: str, out) -> None:
    os.environ["RATIONAL_HOME"] = str(Path(work) / "home")
    from sqlalchemy import JSON, func, insert, literal, select, update

    from curation.export.snapshot import create_export
    from curation.export.spec import ExportFilter
    from curation.prompts.importer import ImportConfig, PromptImporter
    from curation.review import annotations, claims, queues, reading
    from db.engine import make_engine, refresh_statistics
    from db.migrate import upgrade
    from db.models import GenerationRun, Prompt, PromptSet, Trace
    from tests.factories import make_user

    res: dict = {"rss": {}}
    eng = make_engine(url)
    upgrade(eng)
    res["rss"]["start"] = _rss()

    t0 = time.perf_counter()
    cfg = ImportConfig(set_name="scale", mapping={"text": "prompt", "source_id": "id", "category": "category"},
                       behavior_column="label", behavior_map={"safe": "comply", "unsafe": "refuse"})
    report = PromptImporter(eng, cfg).run(csv_path)
    assert report.inserted == n and report.status == "succeeded", report.summary()
    res["import_s"] = time.perf_counter() - t0
    res["rss"]["import"] = _rss()

    t0 = time.perf_counter()
    with eng.begin() as c:
        run_id = c.execute(insert(GenerationRun).values(model="scale", backend="transformers", strategy="single",
                                                        params={}, templates={}, selection={}, summary={},
                                                        status="succeeded", created_at=func.now())
                           ).inserted_primary_key[0]
        set_id = c.execute(select(PromptSet.id).where(PromptSet.name == "scale")).scalar_one()
        cols = ["prompt_id", "run_id", "sample_index", "reasoning", "response", "raw", "parse_ok", "strategy",
                "model", "backend", "sampling", "status", "version", "meta", "created_at"]
        c.execute(insert(Trace).from_select(cols, select(
            Prompt.id, literal(run_id), literal(0),
            literal("The request asks for something that could cause harm; I weigh intent and risk."),
            literal("I can't help with that, but here is a safer alternative and where to find support."),
            literal(""), literal(True), literal("single"), literal("scale"), literal("transformers"),
            literal({}, JSON), literal("pending"), literal(1), literal({}, JSON), func.now())
            .where(Prompt.set_id == set_id)))
    refresh_statistics(eng, ("trace",), n)  # as a generation run does when it ends
    res["traces_s"] = time.perf_counter() - t0
    res["rss"]["traces"] = _rss()

    admin = make_user(eng, "admin", "scale_admin")
    ann = make_user(eng, "annotator", "scale_annotator")
    pages = (n + 49) // 50
    rnd = random.Random(0)
    filters = [({}, 0), ({}, pages // 2), ({}, pages - 1), ({"statuses": ["pending"]}, rnd.randrange(pages)),
               ({"set_names": ["scale"]}, rnd.randrange(pages)), ({"behaviors": ["refuse"]}, 0)]
    reading.browse(eng, admin, {}, limit=50)  # warm the connection pool
    browse_ms = _timed(lambda i: reading.browse(eng, admin, filters[i % len(filters)][0], limit=50,
                                                offset=filters[i % len(filters)][1] * 50), max(30, iterations // 4))
    res["browse"] = {"p50_ms": pct(browse_ms, 50), "p95_ms": pct(browse_ms, 95)}
    res["rss"]["browse"] = _rss()

    t0 = time.perf_counter()
    q = queues.create_queue(eng, admin, "scale", {}, overlap=1, members=[ann.id])
    res["queue_s"] = time.perf_counter() - t0
    state = {"claim": claims.claim_next(eng, ann, q.id)}

    def step(i: int) -> None:
        cl = state["claim"]
        annotations.submit_annotation(eng, ann.id, cl.trace_id, decision="approve" if i % 3 else "reject",
                                      trace_version=cl.trace_version, queue_id=q.id, quality=3,
                                      behavior_label="refuse")
        state["claim"] = claims.claim_next(eng, ann.id, q.id)

    review_ms = _timed(step, iterations)
    res["claim_submit"] = {"p50_ms": pct(review_ms, 50), "p95_ms": pct(review_ms, 95),
                           "mean_ms": statistics.mean(review_ms)}
    res["rss"]["review"] = _rss()

    with eng.begin() as c:
        c.execute(update(Trace).values(status="approved"))
    t0 = time.perf_counter()
    snap = create_export(eng, "scale", "sft", ExportFilter(statuses=["approved"]), formats=["jsonl"],
                         out_dir=str(Path(work) / "exports"))
    res["export_s"] = time.perf_counter() - t0
    res["export_rows"] = snap.row_count
    res["rss"]["export"] = _rss()
    eng.dispose()
    out.put(res)


def run_one(url: str, csv_path: Path, n: int, iterations: int, work: Path) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(url, str(csv_path), n, iterations, str(work), q))
    p.start()
    res = q.get()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"scale child failed with exit code {p.exitcode}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--pg-url", default=os.environ.get("RATIONAL_BENCH_PG_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="rs_scale_"))
    files = {n: write_files(n, folder)["csv"] for n in sizes}
    backends = ["sqlite"] + ([] if args.no_pg else ["postgresql"])
    rows = []
    for backend in backends:
        with FreshDatabase(backend, folder, args.pg_url) as url:  # the plain baseline, at the smallest size
            base = measure("executemany", url, files[sizes[0]])
        for n in sizes:
            work = folder / f"{backend}-{n}"
            work.mkdir()
            with FreshDatabase(backend, folder, args.pg_url) as url:
                r = run_one(url, files[n], n, args.iterations, work)
            r.update(db=backend, n=n, import_rps=n / r["import_s"], export_rps=r["export_rows"] / r["export_s"],
                     baseline_rps=base["rows_per_s"])
            rows.append(r)
            print(f"{backend:10} {n:>9,}: import {r['import_rps']:>7,.0f} rows/s (executemany baseline "
                  f"{base['rows_per_s']:,.0f}, ratio {r['import_rps'] / base['rows_per_s']:.2f}); traces "
                  f"{r['traces_s']:.1f} s; browse p95 {r['browse']['p95_ms']:.1f} ms; queue {r['queue_s']:.1f} s; "
                  f"claim+submit p95 {r['claim_submit']['p95_ms']:.1f} ms; export {r['export_rps']:,.0f} rows/s "
                  f"({r['export_s']:.1f} s); peak RSS {max(r['rss'].values()):.0f} MiB", flush=True)

    print("\n| database | rows | import rows/s | import / executemany | Browse p50 / p95 ms | queue build s "
          "| claim+submit p50 / p95 ms | export rows/s | export s | peak RSS MiB (import / review / export) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['db']} | {r['n']:,} | {r['import_rps']:,.0f} | {r['import_rps'] / r['baseline_rps']:.2f} | "
              f"{r['browse']['p50_ms']:.1f} / {r['browse']['p95_ms']:.1f} | {r['queue_s']:.1f} | "
              f"{r['claim_submit']['p50_ms']:.1f} / {r['claim_submit']['p95_ms']:.1f} | {r['export_rps']:,.0f} | "
              f"{r['export_s']:.1f} | {r['rss']['import']:.0f} / {r['rss']['review']:.0f} / "
              f"{r['rss']['export']:.0f} |")
    big = [r for r in rows if r["n"] == max(sizes)]
    print(f"\ngoals at {max(sizes):,}: import >= {GOALS['import_rows_per_s']:,} rows/s: "
          + ", ".join(f"{r['db']} {'met' if r['import_rps'] >= GOALS['import_rows_per_s'] else 'NOT met'}"
                      for r in big)
          + f"; claim+submit p95 <= {GOALS['claim_submit_p95_ms']:.0f} ms: "
          + ", ".join(f"{r['db']} {'met' if r['claim_submit']['p95_ms'] <= GOALS['claim_submit_p95_ms'] else 'NOT met'}"
                      for r in big)
          + f"; export in < {GOALS['export_1m_seconds']:.0f} s: "
          + ", ".join(f"{r['db']} {'met' if r['export_s'] < GOALS['export_1m_seconds'] else 'NOT met'}"
                      for r in big)
          + f". Load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")


if __name__ == "__main__":
    main()
