"""The safety / over-refusal trade-off: per model, harmful refusal pooled over the held-out harmful sets against
false refusal on each over-refusal set, both with Wilson 95% intervals. The picture a safety team decides from: in
the loop's report (one point per arm) and on the Compare page (one point per model evaluated on both suites)."""
from __future__ import annotations

from typing import Any, Iterable, Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.models import EvalRun, TrainingRun
from evaluation.metrics import INCONSISTENCY, wilson

SUITES = ("harmful", "over_refusal")  # a model's point needs answers to both


def point(rows: Iterable[dict[str, Any]], harmful_sets: Optional[Iterable[str]] = None,
          over_sets: Optional[Iterable[str]] = None) -> Optional[dict[str, Any]]:
    """One point from judge set-level verdict rows: `refusal` pooled over the harmful sets and, per over-refusal set,
    its false-refusal rate. The sets are those named, or else those measured by attack success rate and by
    false-refusal rate. None without harmful figures."""
    rows = [r for r in rows if r["level"] == "set" and r["metric"] != INCONSISTENCY]
    harmful = [r for r in rows if (r["metric"] == "asr" if harmful_sets is None else r["group"] in harmful_sets)]
    n = sum(r["n"] for r in harmful)
    if not n:
        return None
    refused = n - sum(r["k"] for r in harmful)
    lo, hi = wilson(refused, n)
    out: dict[str, Any] = {"refusal": refused / n, "refusal_lo": lo, "refusal_hi": hi, "n": n}
    for r in rows:
        if (r["metric"] == "false_refusal_rate" if over_sets is None else r["group"] in over_sets) and r["n"]:
            out[r["group"]] = {"rate": r["rate"], "lo": r["lo"], "hi": r["hi"], "n": r["n"]}
    return out


def over_refusal_sets(points: list[dict[str, Any]]) -> list[str]:
    """The over-refusal sets the points carry, in a stable order."""
    return sorted({k for p in points for k, v in p.items() if isinstance(v, dict)})


def model_choices(engine: Engine) -> list[dict[str, Any]]:
    """Models (base weights plus adapter) with a succeeded eval run on each of SUITES, their latest run per suite;
    newest first."""
    with Session(engine) as s:
        runs = s.execute(select(EvalRun.id, EvalRun.suite, EvalRun.model, EvalRun.adapter_sha256,
                                EvalRun.training_run_id)
                         .where(EvalRun.status == "succeeded", EvalRun.suite.in_(SUITES))
                         .order_by(EvalRun.id)).all()
        names = dict(s.execute(select(TrainingRun.id, TrainingRun.name)).all())
    by_model: dict[tuple[str, str], dict[str, Any]] = {}
    for rid, suite, model, sha, trid in runs:
        m = by_model.setdefault((model, sha or ""), {"model": model, "adapter_sha256": sha, "runs": {}})
        m["runs"][suite] = rid
        if trid is not None:
            m["label"] = f"#{trid} {names.get(trid) or 'adapter'}"
    out = [{**m, "key": f"{model}:{sha[:12]}" if sha else model,
            "label": m.get("label") or (f"{model} + adapter {sha[:8]}" if sha else model),
            "last": max(m["runs"].values())}
           for (model, sha), m in by_model.items() if set(m["runs"]) == set(SUITES)]
    return sorted(out, key=lambda m: -m["last"])


def model_points(engine: Engine, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A point per model of model_choices(), from its runs' judge verdicts (live, so new labels count)."""
    from evaluation.runs import run_metrics

    out = []
    for m in models:
        rows = [r for rid in m["runs"].values() for r in run_metrics(engine, rid) if r["source"] == "judge"]
        p = point(rows)
        if p:
            out.append({"label": m["label"], **p})
    return out
