"""What a loop leaves behind: each eval run's figures as the report reads them, and the report's files
(metrics.json, report.md, tradeoff.png, per-suite comparisons), written atomically. `refresh_report` writes them
again from the stored runs, so people's later audit labels and corrections reach a finished loop's report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.engine import Engine

from evaluation.audit import corrected_metrics
from evaluation.report import build_report, write_report
from evaluation.runs import consistency_by_set, get_run, run_metrics
from workflows.loop_report import atomic_write, goal_numbers, render_report, tradeoff, tradeoff_png

REPORT_LEVELS = ("suite", "set", "mutation")


def eval_entry(engine: Engine, run_id: int) -> dict[str, Any]:
    """An eval run's figures, live from its outputs (a reused run's stored table may predate a metric): the judge's
    rates with intervals, reasoning-answer consistency per set and the judge-corrected rates per set."""
    run = get_run(engine, run_id)
    rows = [r for r in run_metrics(engine, run_id) if r["source"] == "judge" and r["level"] in REPORT_LEVELS]
    corrected = corrected_metrics(engine, run_id)
    return {"run_id": run_id, "judge": (run.judges or {}).get("decides"), "rows": rows,
            "consistency": consistency_by_set(engine, run_id),
            "corrected": [r for r in corrected["rows"] if r["level"] == "set"], "audit": corrected["audit"]}


def write_outputs(engine: Engine, out: Path, results: dict[str, Any], note: Callable[[str], None]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["goals"] = goal_numbers(results)
    eval_runs = results.get("eval_runs") or {}
    if "evaluation" in results and "base" in eval_runs:
        results["comparison_reports"] = _comparison_reports(engine, out, eval_runs, note)
    results["tradeoff"] = tradeoff(results)
    png = tradeoff_png(results["tradeoff"])
    if png:
        (out / "tradeoff.png").write_bytes(png)
        results["tradeoff_png"] = "tradeoff.png"
    atomic_write(out / "metrics.json", json.dumps(results, indent=1, default=str))
    atomic_write(out / "report.md", render_report(results))


def _comparison_reports(engine: Engine, out: Path, eval_runs: dict[str, dict[str, int]],
                        note: Callable[[str], None]) -> dict[str, str]:
    files = {}
    for suite, base_id in eval_runs["base"].items():
        main_id = eval_runs.get("main", {}).get(suite)
        if main_id is None:
            continue
        try:
            path = write_report(build_report(engine, base_id, main_id, examples=3), out / f"compare_{suite}.md")
            files[suite] = path.name
        except Exception as e:  # the loop's own report must still be written
            note(f"comparison report for {suite} failed: {type(e).__name__}: {e}")
    return files


def refresh_report(engine: Engine, out: Path) -> dict[str, Any]:
    """Rewrite a finished loop's report from its stored eval runs (the same database): the figures as they are
    now, the loop's own record (timings, machine, yields) as it was."""
    path = out / "metrics.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a loop's metrics.json ({e})") from None
    for suites in (results.get("evaluation") or {}).values():
        for d in suites.values():
            if get_run(engine, d["run_id"]) is None:
                raise ValueError(f"{path}: eval run {d['run_id']} is not in this database")
            d.update(eval_entry(engine, d["run_id"]))
    notes = results.setdefault("notes", [])
    write_outputs(engine, out, results, notes.append)
    return results
