"""Re-scoring an eval run: its stored outputs judged again by another judge, without generating again."""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import UserError
from curation.auth import check
from curation.judges.registry import measured
from db.models import EvalOutput, EvalRun, Prompt
from evaluation.judging import deciding_judge, judge_config, measured_summary, refused_for
from evaluation.metrics import compute_metrics, failed_for
from evaluation.runs import outcome_rows


def rescore(engine: Engine, user, run_id: int, judge: str, *, version: Optional[int] = None,
            judge_backend=None) -> dict[str, Any]:
    """Re-judge a run's stored outputs with another judge (no generation): `refused`, `failed` and the run's
    metrics follow the new judge; people's labels stay and still override it."""
    check(engine, user, "evaluate")
    with Session(engine) as s:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise UserError(f"eval run {run_id} does not exist")
        outputs = list(s.execute(select(EvalOutput).where(EvalOutput.run_id == run_id)
                                 .order_by(EvalOutput.id)).scalars())
        texts = dict(s.execute(select(Prompt.id, Prompt.text).where(
            Prompt.id.in_([o.prompt_id for o in outputs]))).all())
    cfg = {**(run.judges or {}), **judge_config(engine, judge, (run.judges or {}).get("llm"))}
    if version is not None and judge == "learned":
        cfg["decides"] = f"learned@v{version}"
        cfg["measured"] = measured_summary(measured(engine, cfg["decides"]))
    j = deciding_judge(engine, cfg, judge_backend)
    decided = j.judge([(texts.get(o.prompt_id, ""), o.response or o.reasoning) for o in outputs])
    changed = 0
    with Session(engine) as s, s.begin():
        for o, d in zip(outputs, decided):
            refused = refused_for(o.metric, d.label)
            changed += refused != o.refused
            labels = {**(o.judge_labels or {}), "judge": {"ref": d.judge, "label": d.label, "score": d.score,
                                                           "why": (d.why or "")[-300:]}}
            s.execute(update(EvalOutput).where(EvalOutput.id == o.id).values(
                refused=refused, failed=failed_for(o.metric, refused), judge_labels=labels))
        history = list((run.judges or {}).get("rescored") or []) + [{"from": (run.judges or {}).get("decides"),
                                                                     "to": d.judge if decided else cfg["decides"],
                                                                     "changed": changed}]
        cfg["decides"] = decided[0].judge if decided else cfg["decides"]
        s.execute(update(EvalRun).where(EvalRun.id == run_id).values(judges={**cfg, "rescored": history}))
    table = [m.as_dict() for m in compute_metrics(outcome_rows(engine, run_id)) if m.source == "judge"]
    with Session(engine) as s, s.begin():
        s.execute(update(EvalRun).where(EvalRun.id == run_id).values(
            metrics={**(run.metrics or {}), "rows": table}))
    return {"run_id": run_id, "judge": cfg["decides"], "outputs": len(outputs), "changed": changed}
