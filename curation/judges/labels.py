"""Auto-labels on traces: computing them (the refusal judges, the default one deciding), writing them, and reading
a run's labels back as a rejection-sampling filter's inputs."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.vocabulary import BEHAVIOR_OF_JUDGE_LABEL, LabelKind
from curation.judges import gates
from curation.judges.base import Judge, Judgement
from curation.judges.consistency import (
    MAX_RESPONSE_CHARS,
    MIN_REASONING_CHARS,
    MIN_RESPONSE_CHARS,
    consistency,
    matches_expected,
)
from curation.judges.registry import DEFAULT_JUDGE, LABEL_JUDGES, get_judge
from curation.judges.verdict import Label
from db.engine import write_engine
from db.models import AutoLabel, Prompt, PromptSet, Trace


class Labeller:
    """The judges one labelling pass uses: `decider` decides each trace's behaviour (the default judge unless
    asked otherwise); the others are written beside it for comparison (Agreement page, review)."""

    def __init__(self, engine: Optional[Engine], decider: str = DEFAULT_JUDGE, *, backend=None,
                 compare: Sequence[str] = LABEL_JUDGES):
        self.decider: Judge = get_judge(decider, engine=engine, backend=backend)
        self.others: list[Judge] = [get_judge(n, engine=engine) for n in compare if n != decider]

    def judgements(self, items: Sequence[tuple[str, str]]) -> list[list[Judgement]]:
        """Per (prompt, response): the decider's judgement first, then the others'."""
        if not items:
            return []
        columns = [self.decider.judge(items)] + [j.judge(items) for j in self.others]
        return [list(row) for row in zip(*columns)]

    def labels(self, rows: Sequence[tuple[Trace, str, str]]) -> list[list[Label]]:
        """Every auto-label of each (trace, expected behaviour, prompt text)."""
        verdicts = self.judgements([(prompt, t.response or "") for t, _e, prompt in rows])
        return [trace_labels(t, expected, prompt, v) for (t, expected, prompt), v in zip(rows, verdicts)]


def trace_labels(trace: Trace, expected: str, prompt: str, verdicts: Sequence[Judgement]) -> list[Label]:
    """Every auto-label of one trace (pure: no database). verdicts[0] decides its behaviour; each verdict is also
    written as a refusal label under its judge's name@version. Then consistency, format, the quality gates,
    matches expected, usable (the yield) and the auto-approve candidate flag."""
    resp, reasoning = trace.response or "", trace.reasoning or ""
    decider = verdicts[0]
    decision = BEHAVIOR_OF_JUDGE_LABEL[decider.label]
    cons, why = consistency(reasoning, decision)
    match = matches_expected(decision, expected)
    meta = trace.meta or {}
    finish = meta.get("finish_reason")
    truncated = "length" in (finish if isinstance(finish, list) else [finish])
    if truncated and meta.get("trimmed"):
        length, lwhy = "trimmed", "hit max_tokens; kept up to the last full sentence"
    elif truncated:
        length, lwhy = "truncated", "generation hit max_tokens"
    elif len(reasoning) < MIN_REASONING_CHARS:
        length, lwhy = "too_short", f"reasoning has {len(reasoning)} chars (< {MIN_REASONING_CHARS})"
    elif len(resp.strip()) < MIN_RESPONSE_CHARS:
        length, lwhy = "too_short", "empty answer"
    elif len(resp) > MAX_RESPONSE_CHARS:
        length, lwhy = "too_long", f"answer has {len(resp)} chars (> {MAX_RESPONSE_CHARS})"
    else:
        length, lwhy = "ok", f"reasoning {len(reasoning)} chars, answer {len(resp)} chars"
    loop, loop_why = gates.repetition(reasoning + "\n" + resp)
    same, same_why = gates.echo(reasoning, resp)
    astray, astray_why = gates.off_topic(prompt, reasoning) if prompt else (None, "no request to compare with")
    failed = [name for name, bad in [("did not parse", not trace.parse_ok),
                                     (f"decision {decision}, expected {expected}", not match),
                                     ("degenerate repetition", loop), ("reasoning echoes the reply", same),
                                     ("off-topic reasoning", astray is True),
                                     (f"length {length}", length not in ("ok", "trimmed"))] if bad]
    usable = not failed
    strict = usable and cons == "consistent"
    return [Label(LabelKind.REFUSAL, v.judge, v.label, v.score, v.why or None) for v in verdicts] + [
        Label(LabelKind.DECISION, decider.judge, decision, decider.score, decider.why or None),
        Label(LabelKind.CONSISTENCY, "cues", cons, None, why),
        Label(LabelKind.FORMAT, "format-tags", "ok" if trace.parse_ok else "bad", float(trace.parse_ok),
              None if trace.parse_ok else (meta.get("parse_error") or "did not parse")),
        Label(LabelKind.FORMAT, "format-length", length, None, lwhy),
        Label(LabelKind.QUALITY, "gate-repetition", "degenerate" if loop else "ok", float(not loop), loop_why),
        Label(LabelKind.QUALITY, "gate-echo", "echo" if same else "ok", float(not same), same_why),
        Label(LabelKind.QUALITY, "gate-topic", "off_topic" if astray else "ok" if astray is False else "unknown",
              None if astray is None else float(not astray), astray_why),
        Label(LabelKind.MATCHES_EXPECTED, decider.judge, "yes" if match else "no", float(match),
              f"decision {decision} ({decider.judge}), expected {expected}"),
        Label(LabelKind.USABLE, "yield", "yes" if usable else "no", float(usable),
              "parses, matches expected, passes every gate" if usable else "; ".join(failed)),
        Label(LabelKind.AUTO_APPROVE, "filter", "candidate" if strict else "no", float(strict),
              "usable and consistent" if strict else "failed: " + "; ".join(
                  failed + ([] if cons == "consistent" else [f"consistency {cons}"]))),
    ]


def select_traces(engine: Engine, *, set_name: Optional[str] = None, run_id: Optional[int] = None,
                  trace_ids: Optional[Iterable[int]] = None) -> list[tuple[Trace, str, str, Optional[str]]]:
    """(trace, expected behaviour, prompt text, category) for the chosen traces."""
    q = (select(Trace, Prompt.expected_behavior, Prompt.text, Prompt.category)
         .join(Prompt, Prompt.id == Trace.prompt_id).order_by(Trace.id))
    if set_name:
        q = q.where(Prompt.set_id.in_(select(PromptSet.id).where(PromptSet.name == set_name)))
    if run_id is not None:
        q = q.where(Trace.run_id == run_id)
    if trace_ids is not None:
        q = q.where(Trace.id.in_(list(trace_ids)))
    with Session(engine, expire_on_commit=False) as s:
        return [tuple(r) for r in s.execute(q).all()]  # type: ignore[misc]


def write_labels(engine: Engine, labels: dict[int, list[Label]]) -> int:
    """Replace each trace's labels of the kinds given (older judge versions' too), in one transaction."""
    n = 0
    with Session(write_engine(engine)) as s:
        for trace_id, ls in labels.items():
            s.execute(delete(AutoLabel).where(AutoLabel.trace_id == trace_id,
                                              AutoLabel.kind.in_({lb.kind for lb in ls})))
            s.add_all([AutoLabel(trace_id=trace_id, kind=lb.kind, agent=lb.agent, label=lb.label, score=lb.score,
                                 rationale=lb.rationale) for lb in ls])
            n += len(ls)
        s.commit()
    return n


def label_traces(engine: Engine, *, set_name: Optional[str] = None, run_id: Optional[int] = None,
                 judge: str = DEFAULT_JUDGE, backend=None, batch: int = 200,
                 progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Recompute the chosen traces' auto-labels, `judge` deciding (the default judge unless asked; the llm judge
    needs a backend)."""
    labeller = Labeller(engine, judge, backend=backend)
    rows = select_traces(engine, set_name=set_name, run_id=run_id)
    counts: dict[str, Any] = {"traces": len(rows), "labels": 0, "auto_approve_candidates": 0, "inconsistent": 0,
                              "judge": labeller.decider.ref}
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        labels = dict(zip([t.id for t, *_ in chunk], labeller.labels([(t, e, p) for t, e, p, _c in chunk])))
        for ls in labels.values():
            for lb in ls:
                counts["auto_approve_candidates"] += lb.kind == LabelKind.AUTO_APPROVE and lb.label == "candidate"
                counts["inconsistent"] += lb.kind == LabelKind.CONSISTENCY and lb.label == "inconsistent"
        counts["labels"] += write_labels(engine, labels)
        if progress:
            progress(min(start + batch, len(rows)), len(rows), f"labelled {min(start + batch, len(rows))} traces")
    return counts


def label_summary(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    """Per trace of a run: parse, expected behaviour, and what its auto-labels say (matches expected, consistent,
    auto-approve candidate, truncated): the inputs of a rejection-sampling filter."""
    q = (select(Trace.id, Trace.prompt_id, Trace.parse_ok, Trace.response, Prompt.expected_behavior,
                AutoLabel.kind, AutoLabel.label).join(Prompt, Prompt.id == Trace.prompt_id)
         .outerjoin(AutoLabel, AutoLabel.trace_id == Trace.id)
         .where(Trace.run_id == run_id).order_by(Trace.id))
    by: dict[int, dict[str, Any]] = {}
    with Session(engine) as s:
        for tid, pid, pok, resp, beh, kind, label in s.execute(q):
            r = by.setdefault(tid, {"id": tid, "prompt_id": pid, "parse_ok": bool(pok), "behavior": beh,
                                    "has_response": bool((resp or "").strip()), "match": False,
                                    "consistent": False, "inconsistent": False, "strict": False,
                                    "truncated": False})
            if kind == LabelKind.MATCHES_EXPECTED:
                r["match"] = label == "yes"
            elif kind == LabelKind.CONSISTENCY:
                r["consistent"], r["inconsistent"] = label == "consistent", label == "inconsistent"
            elif kind == LabelKind.AUTO_APPROVE:
                r["strict"] = label == "candidate"
            elif kind == LabelKind.FORMAT and label == "truncated":
                r["truncated"] = True
    return list(by.values())
