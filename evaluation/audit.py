"""A judge audit per eval run, and every rate corrected for the judge's error.

The audit is a random sample of the run's outputs, stratified by the judge's verdict (half it called refusals,
half not), that people label through the ordinary human-verdict path; once each verdict has enough labels, the
run's own agreement corrects its rates. Until then the judge version's confusion on the shipped held-out responses
does (evaluation.correction says how)."""
from __future__ import annotations

import random
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.auth import require
from curation.judges.registry import measured
from curation.review.audit import record
from db.engine import write_engine
from db.models import EvalOutput, EvalRun, Prompt
from evaluation.correction import (
    Accuracy,
    audit_accuracy,
    corrected_rate,
    held_out_accuracy,
    positive_labels,
)
from evaluation.metrics import VERDICT_METRICS, failed_for

MAX_AUDIT = 500


def create_audit(engine: Engine, user, run_id: int, n: int, *, seed: int = 0) -> list[int]:
    """Draw `n` outputs of the run for people to label, half from each of the judge's verdicts (all of a verdict
    when it has fewer); replaces an earlier draw, keeping labels already given. Returns the output ids."""
    if not 2 <= n <= MAX_AUDIT:
        raise ValueError(f"audit size must be between 2 and {MAX_AUDIT}, got {n}")
    with Session(write_engine(engine)) as s:
        me = require(s, user, "label_outputs")
        run = s.execute(select(EvalRun).where(EvalRun.id == run_id).with_for_update()).scalars().first()
        if run is None:
            raise ValueError(f"eval run {run_id} does not exist")
        rows = s.execute(select(EvalOutput.id, EvalOutput.refused).where(EvalOutput.run_id == run_id)
                         .order_by(EvalOutput.id)).all()
        if not rows:
            raise ValueError(f"eval run {run_id} has no outputs to audit yet")
        rng = random.Random(f"audit:{run_id}:{seed}")
        pos = [i for i, refused in rows if refused]
        neg = [i for i, refused in rows if not refused]
        take_pos = min(len(pos), max(n // 2, n - len(neg)))
        ids = sorted(rng.sample(pos, take_pos) + rng.sample(neg, min(len(neg), n - take_pos)))
        before = (run.selection or {}).get("audit_ids")
        run.selection = {**(run.selection or {}), "audit_ids": ids}
        record(s, me.id, "eval_run", run_id, "audit", {"audit_ids": before}, {"audit_ids": ids})
        s.commit()
        return ids


def audit_outputs(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    """The audited outputs with what the judge said and what people said (None: not labelled yet)."""
    with Session(engine) as s:
        run = s.get(EvalRun, run_id)
        ids = list(((run.selection or {}) if run else {}).get("audit_ids") or [])
        rows = s.execute(select(EvalOutput.id, EvalOutput.set_name, EvalOutput.metric, EvalOutput.reasoning,
                                EvalOutput.response, EvalOutput.refused, EvalOutput.human_refused,
                                EvalOutput.version, Prompt.text)
                         .join(Prompt, Prompt.id == EvalOutput.prompt_id)
                         .where(EvalOutput.id.in_(ids)).order_by(EvalOutput.id)).all() if ids else []
    return [dict(id=r.id, set_name=r.set_name, metric=r.metric, prompt=r.text, reasoning=r.reasoning,
                 response=r.response, judge_refused=r.refused, human_refused=r.human_refused, version=r.version)
            for r in rows]


def _accuracies(engine: Engine, run: EvalRun, audited: list[dict[str, Any]]) -> dict[str, Optional[Accuracy]]:
    own = audit_accuracy([(a["judge_refused"], a["human_refused"]) for a in audited
                          if a["human_refused"] is not None])
    m = ((run.judges or {}).get("measured") or {})
    confusion = m.get("confusion")
    if confusion is None and (run.judges or {}).get("decides"):
        confusion = (measured(engine, run.judges["decides"]) or {}).get("confusion")
    return {metric: own or held_out_accuracy(confusion or {}, positive_labels(metric)) for metric in VERDICT_METRICS}


def corrected_metrics(engine: Engine, run_id: int) -> dict[str, Any]:
    """Per verdict metric at suite and set level: the judge's raw rate and the corrected one with its interval
    and where the correction came from; with the audit's size and labelled count."""
    with Session(engine) as s:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise ValueError(f"eval run {run_id} does not exist")
        outs = s.execute(select(EvalOutput.set_name, EvalOutput.metric, EvalOutput.refused)
                         .where(EvalOutput.run_id == run_id)).all()
    audited = audit_outputs(engine, run_id)
    acc = _accuracies(engine, run, audited)
    groups: dict[tuple[str, str, str], list[bool]] = {}
    for set_name, metric, refused in outs:
        if metric in VERDICT_METRICS:
            groups.setdefault((metric, "suite", "all"), []).append(refused)
            groups.setdefault((metric, "set", set_name), []).append(refused)
    rows = []
    for (metric, level, group), refused in sorted(groups.items()):
        raw = sum(failed_for(metric, r) for r in refused) / len(refused)
        c = corrected_rate(refused, failed_for(metric, True), acc[metric])
        rows.append({"metric": metric, "level": level, "group": group, "n": len(refused), "raw": raw,
                     "corrected": None if c is None else c.as_dict()})
    return {"rows": rows, "audit": {"sampled": len(audited),
                                    "labelled": sum(a["human_refused"] is not None for a in audited)}}
