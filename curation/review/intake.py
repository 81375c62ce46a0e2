"""Outside outputs into review: model answers produced elsewhere (an eval run's failures) become pending traces of
one named source run, with a refusal label, in a review queue. Idempotent: a prompt already sent is skipped."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.vocabulary import Behavior, LabelKind, TraceStatus
from curation.auth import require
from curation.review.audit import record
from curation.review.queues import create_queue, refresh_queue
from db.engine import write_engine
from db.filters import TraceFilter
from db.models import AutoLabel, GenerationRun, Queue, Trace, User, utcnow


@dataclass
class OutsideOutput:
    prompt_id: int
    reasoning: str
    response: str
    raw: str
    parse_ok: bool
    refused: bool  # the verdict to show as the trace's refusal label
    label_agent: str
    meta: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    gen_seconds: Optional[float] = None


def send_to_review(engine: Engine, user: User | int, *, source_name: str, model: str, backend: str,
                   sampling: dict, params: dict, selection: dict, outputs: list[OutsideOutput], queue_name: str,
                   queue_description: str, audit: tuple[str, int, str]) -> dict[str, Any]:
    """Store `outputs` as pending traces of the source run `source_name` and queue them; `audit` is the
    (entity, id, action) the hand-over is recorded as."""
    with Session(write_engine(engine)) as s:
        me = require(s, user, "manage_queues")
        gen = s.execute(select(GenerationRun).where(GenerationRun.name == source_name)).scalars().first()
        if gen is None:
            gen = GenerationRun(name=source_name, model=model, backend=backend, strategy="eval", params=params,
                                selection=selection, status="succeeded", created_by=me.id, finished_at=utcnow())
            s.add(gen)
            s.flush()
        have = set(s.execute(select(Trace.prompt_id).where(Trace.run_id == gen.id)).scalars())
        new = [o for o in outputs if o.prompt_id not in have]
        for o in new:
            t = Trace(prompt_id=o.prompt_id, run_id=gen.id, reasoning=o.reasoning, response=o.response, raw=o.raw,
                      parse_ok=o.parse_ok, strategy="eval", model=model, backend=backend, sampling=sampling,
                      prompt_tokens=o.prompt_tokens, completion_tokens=o.completion_tokens,
                      gen_seconds=o.gen_seconds, status=TraceStatus.PENDING, meta=o.meta)
            s.add(t)
            s.flush()
            # The eval's verdict decides the trace's behaviour, as a judge's decision label does.
            s.add(AutoLabel(trace_id=t.id, kind=LabelKind.DECISION, agent=o.label_agent,
                            label=Behavior.REFUSE if o.refused else Behavior.COMPLY))
        record(s, me.id, *audit, None,
               {"generation_run_id": gen.id, "traces_added": len(new)})
        s.commit()
        gen_id = gen.id
        counts: dict[str, int] = {}
        for meta in s.execute(select(Trace.meta).where(Trace.run_id == gen_id)).scalars():
            counts[meta.get("failure", "")] = counts.get(meta.get("failure", ""), 0) + 1
        existing = s.execute(select(Queue.id).where(Queue.name == queue_name)).scalar()
    if existing is None:
        queue_id = create_queue(engine, user, queue_name, TraceFilter(run_ids=[gen_id]),
                                description=queue_description).id
    else:
        refresh_queue(engine, user, existing)
        queue_id = existing
    return {"generation_run_id": gen_id, "traces_added": len(new), "queue_id": queue_id, "queue_name": queue_name,
            "by_failure": counts}
