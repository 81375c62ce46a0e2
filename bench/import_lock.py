"""How long a large SQLite import keeps other writers (an annotator's submit) waiting: the chunked, staged import
against the one-transaction write it replaced, side by side in this process; and what the rule that hides staged
rows costs a Prompts-page query.

Run: .venv/bin/python bench/import_lock.py [--rows 200000]
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import curation.prompts.importer as importer
from curation.prompts.importer import ImportConfig, PromptImporter
from db.engine import make_engine
from db.filters import PromptFilter
from db.migrate import upgrade
from db.models import Prompt
from db.visibility import INCLUDE_STAGED


def writer_waits(db: str, stop: threading.Event) -> list[float]:
    """Take and release the write lock every 50 ms, as submits do; each wait in seconds."""
    waits = []
    conn = sqlite3.connect(db, timeout=300, isolation_level=None)
    while not stop.is_set():
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waits.append(time.perf_counter() - t0)
        conn.execute("ROLLBACK")
        time.sleep(0.05)
    conn.close()
    return waits


def run(mode: str, rows: int, folder: Path) -> dict:
    db = folder / f"{mode}.db"
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng)
    csv = folder / "big.csv"
    imp = PromptImporter(eng, ImportConfig(set_name="big", mapping={"text": "prompt"}, behavior="refuse"))
    if mode == "one transaction":
        imp._write_staged = imp._write_one_transaction  # the write this replaced
    stop, out = threading.Event(), {}
    t = threading.Thread(target=lambda: out.setdefault("waits", writer_waits(str(db), stop)))
    t.start()
    t0 = time.perf_counter()
    report = imp.run(csv)
    wall = time.perf_counter() - t0
    stop.set()
    t.join()
    assert report.inserted == rows, report.summary()
    eng.dispose()
    waits = sorted(out["waits"])
    return {"mode": mode, "wall_s": wall, "max_wait_s": waits[-1], "p95_wait_s": waits[int(0.95 * (len(waits) - 1))],
            "n": len(waits)}


def query_cost(folder: Path) -> tuple[float, float]:
    eng = make_engine(f"sqlite:///{folder / 'staged.db'}")
    flt = PromptFilter(search="thing number 1")

    def median(opts) -> float:
        xs = []
        for _ in range(9):
            t0 = time.perf_counter()
            with Session(eng) as s:
                s.execute(flt.apply(select(func.count(Prompt.id))), execution_options=opts).scalar_one()
            xs.append(time.perf_counter() - t0)
        return statistics.median(xs)

    return median({}), median({INCLUDE_STAGED: True})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "big.csv").write_text("prompt\n" + "".join(f"how do I do thing number {i}?\n"
                                                         for i in range(args.rows)))
    print(f"{args.rows:,} rows, chunks of {importer.BATCH:,}")
    res = [run(m, args.rows, folder) for m in ("one transaction", "staged")]
    for r in res:
        print(f"{r['mode']:>16}: import {r['wall_s']:.1f} s; another writer waited at most {r['max_wait_s']:.2f} s "
              f"(p95 {r['p95_wait_s']:.3f} s, {r['n']} tries)")
    one, staged = res
    print(f"longest wait, staged / one transaction: {staged['max_wait_s'] / one['max_wait_s']:.3f}; "
          f"import time ratio {staged['wall_s'] / one['wall_s']:.2f}")
    with_rule, without = query_cost(folder)
    print(f"Prompts-page count with the staged-rows rule / without: {with_rule / without:.2f}")


if __name__ == "__main__":
    main()
