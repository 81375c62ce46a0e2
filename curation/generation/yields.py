"""What a generation run yielded, per expected behaviour: samples, parsed, matches expected, usable (parses,
matches and passes every quality gate), the reasons samples were rejected, and the rejected samples themselves.
A weak model often yields little; this is shown, never hidden."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.vocabulary import DEFAULT_MODEL, LabelKind
from db.models import AutoLabel, GenerationRun, Prompt, Trace

YIELD_KEYS = ("samples", "parsed", "matches", "usable")


def _label(kind: str):
    return select(AutoLabel.trace_id, AutoLabel.label, AutoLabel.rationale).where(AutoLabel.kind == kind).subquery()


def run_yield(engine: Engine, run_id: int) -> dict[str, Any]:
    """{"yield": {behaviour: {samples, parsed, matches, usable}}, "rejected": {reason: count}}."""
    match, usable = _label(LabelKind.MATCHES_EXPECTED), _label(LabelKind.USABLE)
    q = (select(Prompt.expected_behavior, func.count(Trace.id), func.sum(case((Trace.parse_ok.is_(True), 1),
                                                                               else_=0)),
                func.sum(case((match.c.label == "yes", 1), else_=0)), func.sum(case((usable.c.label == "yes", 1),
                                                                                   else_=0)))
         .join(Prompt, Prompt.id == Trace.prompt_id)
         .outerjoin(match, match.c.trace_id == Trace.id).outerjoin(usable, usable.c.trace_id == Trace.id)
         .where(Trace.run_id == run_id).group_by(Prompt.expected_behavior))
    reasons = (select(usable.c.rationale).join(Trace, Trace.id == usable.c.trace_id)
               .where(Trace.run_id == run_id, usable.c.label == "no"))
    with Session(engine) as s:
        rows = s.execute(q).all()
        rejected: dict[str, int] = {}
        for (why,) in s.execute(reasons):
            for part in (why or "unknown").split("; "):
                key = "wrong decision" if part.startswith("decision ") else part
                rejected[key] = rejected.get(key, 0) + 1
    return {"yield": {b: dict(zip(YIELD_KEYS, (int(v or 0) for v in vals))) for b, *vals in rows},
            "rejected": dict(sorted(rejected.items(), key=lambda kv: -kv[1]))}


def rejected_samples(engine: Engine, run_id: int, *, behavior: Optional[str] = None, limit: int = 200
                     ) -> list[dict[str, Any]]:
    """The run's samples that are not usable, each with the reason (the newest first)."""
    usable = _label(LabelKind.USABLE)
    q = (select(Trace.id, Prompt.expected_behavior, Prompt.text, Trace.reasoning, Trace.response,
                usable.c.rationale)
         .join(Prompt, Prompt.id == Trace.prompt_id).join(usable, usable.c.trace_id == Trace.id)
         .where(Trace.run_id == run_id, usable.c.label == "no").order_by(Trace.id.desc()).limit(limit))
    if behavior:
        q = q.where(Prompt.expected_behavior == behavior)
    with Session(engine) as s:
        return [{"trace_id": tid, "behavior": b, "prompt": p, "reasoning": r, "response": resp, "reason": why}
                for tid, b, p, r, resp, why in s.execute(q)]


def latest_traces(engine: Engine, run_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The run's newest traces with their usable label: what the page shows while a run goes on."""
    usable = _label(LabelKind.USABLE)
    q = (select(Trace.id, Prompt.expected_behavior, Prompt.text, Trace.reasoning, Trace.response,
                usable.c.label, usable.c.rationale)
         .join(Prompt, Prompt.id == Trace.prompt_id).outerjoin(usable, usable.c.trace_id == Trace.id)
         .where(Trace.run_id == run_id).order_by(Trace.id.desc()).limit(limit))
    with Session(engine) as s:
        return [{"trace_id": tid, "behavior": b, "prompt": p, "reasoning": r, "response": resp,
                 "usable": u, "why": why} for tid, b, p, r, resp, u, why in s.execute(q)]


def run_summaries(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Recent runs with their yield per expected behaviour."""
    with Session(engine) as s:
        runs = list(s.execute(select(GenerationRun).order_by(GenerationRun.id.desc()).limit(limit)).scalars())
    out = []
    for r in runs:
        y = (r.summary or {}).get("yield") or (run_yield(engine, r.id)["yield"] if r.status != "queued" else {})
        n = sum(v["samples"] for v in y.values())
        out.append({"id": r.id, "name": r.name, "model": r.model, "backend": r.backend,
                    "strategy": r.params.get("strategy_ref", r.strategy), "status": r.status, "samples": n,
                    "parsed": sum(v["parsed"] for v in y.values()), "usable": sum(v["usable"] for v in y.values()),
                    "yield": "; ".join(f"{b}: {v['usable']}/{v['samples']} usable" for b, v in sorted(y.items()))
                    or "-"})
    return out


def sample_traces(engine: Engine, run_id: int, per: int = 2, chars: int = 400) -> dict[str, list[dict]]:
    """A few traces of a run per (expected behaviour, status), cut to `chars`: evidence beside a yield table."""
    out: dict[str, list[dict]] = {}
    with Session(engine) as s:
        rows = s.execute(select(Trace.id, Trace.status, Trace.parse_ok, Trace.reasoning, Trace.response,
                                Prompt.text, Prompt.expected_behavior).join(Prompt, Prompt.id == Trace.prompt_id)
                         .where(Trace.run_id == run_id).order_by(Trace.id)).all()
    for tid, status, ok, reasoning, response, prompt, beh in rows:
        group = out.setdefault(beh, [])
        if sum(1 for g in group if g["status"] == status) < per:
            group.append({"trace_id": tid, "status": status, "parse_ok": bool(ok), "prompt": prompt[:chars],
                          "reasoning": (reasoning or "")[:chars], "response": (response or "")[:chars]})
    return out


MEASURED = Path(__file__).parent / "data" / "measured_yield.json"  # written by bench/generation.py
MIN_SAMPLES = 20  # per behaviour, before a run's yield counts as a measurement


def measured_yields(engine: Engine, model: str) -> dict[str, dict[str, Any]]:
    """Per strategy: usable/samples per behaviour for this model, from this database's finished runs, else from
    the shipped benchmark measurement. Only strategies measured on both harmful and benign prompts count."""
    found: dict[str, dict[str, list[int]]] = {}
    with Session(engine) as s:
        for r in s.execute(select(GenerationRun).where(GenerationRun.model == model,
                                                       GenerationRun.status == "succeeded")).scalars():
            for b, y in ((r.summary or {}).get("yield") or {}).items():
                acc = found.setdefault(r.strategy, {}).setdefault(b, [0, 0])
                acc[0] += y["usable"]
                acc[1] += y["samples"]
    out = {name: {"per_behavior": by, "source": "your runs"} for name, by in found.items()
           if all(by.get(b, [0, 0])[1] >= MIN_SAMPLES for b in ("refuse", "comply"))}
    if not out and MEASURED.exists():
        shipped = json.loads(MEASURED.read_text(encoding="utf-8"))
        key = next((k for k in shipped if k == model or model in shipped[k].get("aliases", [])), None)
        if key is not None:
            out = {name: {"per_behavior": by, "source": shipped[key]["source"]}
                   for name, by in shipped[key]["strategies"].items()}
    return out


def _score(m: dict) -> float:
    """The mean of a strategy's usable share on harmful and on benign prompts."""
    return sum(u / n for u, n in (m["per_behavior"][b] for b in ("refuse", "comply"))) / 2


def default_strategy(engine: Engine, model: str) -> tuple[str, str]:
    """(strategy, why): the strategy with the best measured yield for this model; where nothing was measured for
    it, or nothing it ran yielded a usable trace, the best one on the embedded model."""
    measured = measured_yields(engine, model)
    best = max(sorted(measured), key=lambda name: _score(measured[name])) if measured else None
    if best is None or _score(measured[best]) == 0:
        embedded = measured_yields(engine, DEFAULT_MODEL) if model != DEFAULT_MODEL else {}
        fallback = max(sorted(embedded), key=lambda name: _score(embedded[name])) if embedded else "single"
        seen = "no usable trace from any strategy" if measured else "nothing measured"
        return fallback, (f"{seen} for {model} yet, so the best on the embedded model"
                          + (f" ({_score(embedded[fallback]):.0%} usable there)" if embedded else "")
                          + "; `bench/generation.py --yield` or a few runs measure this model")
    m = measured[best]
    parts = ", ".join(f"{b} {u}/{n}" for b, (u, n) in sorted(m["per_behavior"].items()) if b in ("refuse",
                                                                                                     "comply"))
    others = [f"{name} {_score(x):.0%}" for name, x in sorted(measured.items()) if name != best]
    return best, (f"best measured yield for {model}: {_score(m):.0%} usable ({parts}; {m['source']})"
                  + (", against " + ", ".join(others) if others else ", the only strategy measured"))
