"""Prompt import throughput and memory: PromptImporter vs a plain SQLAlchemy executemany, SQLite and PostgreSQL.

    .venv/bin/python bench/import_export.py [--rows 100000] [--small 25000] [--pg-url URL] [--no-pg]

Writes synthetic prompts to CSV and JSONL (streamed), then imports each file in a fresh child process (spawn), so
the peak RSS printed is the import's own: `ru_maxrss` of that child, next to the child's RSS before the import
started (interpreter + libraries). Each PostgreSQL run gets a database created for it and dropped after.
The baseline reads the same CSV, hashes each text (the unique key) and inserts with Core executemany in one
transaction, batch by batch: no validation, no duplicate checks, no error report. Goal: importer >= 20k rows/s.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 20_000
CATEGORIES = ["cyber", "chemical", "harassment", "fraud", "privacy", "self_harm", "misinformation"]
WORDS = ("how could someone explain the safest way to handle a request about building testing securing reviewing "
         "a network system chemical process story essay character plan for school work research").split()


def synthetic_rows(n: int):
    for i in range(n):
        words = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(12 + i % 20))
        yield {"id": f"syn-{i}", "prompt": f"Prompt {i}: {words}?", "label": "unsafe" if i % 3 == 0 else "safe",
               "category": CATEGORIES[i % len(CATEGORIES)], "source": "bench", "difficulty": str(i % 5)}


def write_files(n: int, folder: Path) -> dict[str, Path]:
    """Streamed writes: one row in memory at a time."""
    paths = {"csv": folder / f"bench_{n}.csv", "jsonl": folder / f"bench_{n}.jsonl"}
    fields = ["id", "prompt", "label", "category", "source", "difficulty"]
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fc, \
            open(paths["jsonl"], "w", encoding="utf-8") as fj:
        w = csv.DictWriter(fc, fieldnames=fields)
        w.writeheader()
        for row in synthetic_rows(n):
            w.writerow(row)
            fj.write(json.dumps(row) + "\n")
    return paths


# -- child processes: one measured run each -------------------------------------------------------------------
def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(kind: str, url: str, path: str, out) -> None:
    from sqlalchemy import insert

    from core.identity import prompt_sha256
    from curation.prompts.importer import ImportConfig, PromptImporter
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.models import Prompt, PromptSet, utcnow

    eng = make_engine(url)
    upgrade(eng)
    before = _rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "importer":
        cfg = ImportConfig(set_name="bench", mapping={"text": "prompt", "source_id": "id", "category": "category"},
                           behavior_column="label", behavior_map={"safe": "comply", "unsafe": "refuse"})
        report = PromptImporter(eng, cfg).run(path)
        rows = report.inserted
        assert report.invalid == 0 and report.status == "succeeded", report.summary()
    else:  # the baseline: the same rows, straight in
        from curation.prompts.importer import BATCH

        rows = 0
        with eng.begin() as conn:
            set_id = conn.execute(insert(PromptSet).values(project_id=1, name="bench")).inserted_primary_key[0]
            now, batch = utcnow(), []
            with open(path, newline="", encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    batch.append({"project_id": 1, "set_id": set_id, "text": r["prompt"],
                                  "sha256": prompt_sha256(r["prompt"]), "source_id": r["id"],
                                  "category": r["category"],
                                  "expected_behavior": "refuse" if r["label"] == "unsafe" else "comply",
                                  "split": "train", "meta": {"source": r["source"], "difficulty": r["difficulty"]},
                                  "created_at": now})
                    if len(batch) >= BATCH:
                        conn.execute(insert(Prompt.__table__), batch)
                        rows += len(batch)
                        batch = []
            if batch:
                conn.execute(insert(Prompt.__table__), batch)
                rows += len(batch)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    eng.dispose()
    out.put({"rows": rows, "seconds": seconds, "cpu": cpu, "rss_before": before, "rss_peak": _rss_mib()})


def measure(kind: str, url: str, path: Path) -> dict:
    ctx = mp.get_context("spawn")  # a fresh interpreter: nothing inherited inflates the RSS
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, url, str(path), q))
    p.start()
    res = q.get()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{kind} child failed with exit code {p.exitcode}")
    res["rows_per_s"] = res["rows"] / res["seconds"]
    res["rows_per_cpu_s"] = res["rows"] / res["cpu"]  # this process's CPU only: PostgreSQL's own work not in it
    return res


# -- databases ------------------------------------------------------------------------------------------------
class FreshDatabase:
    """A database that exists for one run: a new SQLite file, or a PostgreSQL database created and dropped."""

    def __init__(self, backend: str, folder: Path, pg_url: str):
        self.backend, self.folder, self.pg_url = backend, folder, pg_url

    def __enter__(self) -> str:
        name = f"rs_bench_{uuid.uuid4().hex[:10]}"
        if self.backend == "sqlite":
            self.url = f"sqlite:///{self.folder / (name + '.db')}"
            return self.url
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        from db.engine import make_engine

        self.admin = make_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        self.name = name
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        return make_url(self.pg_url).set(database=name).render_as_string(hide_password=False)

    def __exit__(self, *exc) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.url[len("sqlite:///"):] + suffix).unlink(missing_ok=True)
            return
        from sqlalchemy import text

        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=25_000, help="the smaller file of the memory-flatness check")
    ap.add_argument("--pg-url", default=os.environ.get("RATIONAL_BENCH_PG_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--folder", type=Path, default=None)
    args = ap.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="rs_bench_"))
    backends = ["sqlite"] + ([] if args.no_pg else ["postgresql"])

    t0 = time.perf_counter()
    big, small = write_files(args.rows, folder), write_files(args.small, folder)
    size_mib = big["csv"].stat().st_size / 2**20
    print(f"wrote {args.rows:,} rows: CSV {size_mib:.1f} MiB, JSONL {big['jsonl'].stat().st_size / 2**20:.1f} MiB "
          f"and {args.small:,} rows in {time.perf_counter() - t0:.1f} s -> {folder}", flush=True)

    results = []  # (backend, what, file rows, format, result)
    for backend in backends:
        plan = [("importer", big, "csv"), ("importer", big, "jsonl"), ("executemany", big, "csv")]
        if backend == "sqlite":
            plan.append(("importer", small, "csv"))
        for kind, files, fmt in plan:
            with FreshDatabase(backend, folder, args.pg_url) as url:
                r = measure(kind, url, files[fmt])
            n = args.rows if files is big else args.small
            results.append((backend, kind, n, fmt, r))
            print(f"{backend:10} {kind:11} {fmt:5} {n:>7,} rows: {r['rows_per_s']:>9,.0f} rows/s  "
                  f"{r['seconds']:6.1f} s (client CPU {r['cpu']:5.1f} s)  peak RSS {r['rss_peak']:6.0f} MiB (before import {r['rss_before']:.0f})",
                  flush=True)

    print("\n| database | method | format | rows | rows/s (wall) | seconds | rows per client CPU s | peak RSS MiB "
          "| RSS before MiB | vs executemany (wall) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    base = {b: r["rows_per_s"] for b, k, n, f, r in results if k == "executemany"}
    for b, k, n, f, r in results:
        ratio = r["rows_per_s"] / base[b] if base.get(b) else float("nan")
        print(f"| {b} | {k} | {f} | {n:,} | {r['rows_per_s']:,.0f} | {r['seconds']:.1f} | {r['rows_per_cpu_s']:,.0f} | "
              f"{r['rss_peak']:.0f} | "
              f"{r['rss_before']:.0f} | {ratio:.2f} |")
    mem = {n: r["rss_peak"] - r["rss_before"] for b, k, n, f, r in results
           if b == "sqlite" and k == "importer" and f == "csv"}
    if len(mem) == 2:
        lo, hi = sorted(mem)
        print(f"\nmemory vs file size (SQLite, CSV): import grew RSS by {mem[lo]:.0f} MiB for {lo:,} rows and "
              f"{mem[hi]:.0f} MiB for {hi:,} rows ({hi // lo}x the rows)")
    worst = min(r["rows_per_s"] for b, k, n, f, r in results if k == "importer" and n == args.rows)
    print(f"slowest importer run: {worst:,.0f} rows/s wall (goal {GOAL:,}): {'met' if worst >= GOAL else 'NOT met'}; "
          f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
