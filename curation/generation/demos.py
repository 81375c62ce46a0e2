"""The demo library: worked examples (prompt → reasoning → reply, per expected behaviour) that few-shot strategies
show the model. It starts with a small shipped set and grows from review: an approved or edited trace is promoted
to a demo in one key press, so reviewers' edits improve the next generation round, not only training.

Each sample draws its own demos: seeded (the run's seed, the prompt, the sample index), balanced by behaviour,
reviewers' demos before shipped ones, never the sample's own prompt and never a prompt held out for evaluation.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import UserError
from core.identity import prompt_sha256
from core.vocabulary import BEHAVIORS, Decision, Split, TraceStatus
from curation.auth import require
from db.engine import write_engine
from db.models import Annotation, AuditEvent, Demo, Prompt, Trace, User

SHIPPED = Path(__file__).parent / "data" / "demos.json"


def ensure_shipped(engine: Engine) -> int:
    """Add the shipped demos the library lacks (idempotent); returns how many were added."""
    rows = json.loads(SHIPPED.read_text(encoding="utf-8"))
    with Session(write_engine(engine)) as s:
        have = set(s.execute(select(Demo.prompt_sha256, Demo.behavior)).all())
        new = [Demo(behavior=r["behavior"], prompt=r["prompt"], prompt_sha256=prompt_sha256(r["prompt"]),
                    reasoning=r["reasoning"], response=r["response"], source="shipped")
               for r in rows if (prompt_sha256(r["prompt"]), r["behavior"]) not in have]
        s.add_all(new)
        s.commit()
    return len(new)


def demo_dict(d: Demo) -> dict[str, Any]:
    return {"id": d.id, "behavior": d.behavior, "prompt": d.prompt, "reasoning": d.reasoning,
            "response": d.response, "source": d.source, "trace_id": d.trace_id, "is_active": d.is_active,
            "created_at": d.created_at}


def list_demos(engine: Engine, *, active_only: bool = True) -> list[dict[str, Any]]:
    q = select(Demo).order_by(Demo.id)
    if active_only:
        q = q.where(Demo.is_active.is_(True))
    with Session(engine) as s:
        return [demo_dict(d) for d in s.execute(q).scalars()]


def promote(engine: Engine, user: User | int, trace_id: int) -> dict[str, Any]:
    """Make a reviewed trace a demo: its final text where the trace is approved, else the user's own approving or
    editing annotation. A trace of an eval-split prompt never becomes one (it would leak into training data)."""
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "curate_demos")
        row = s.execute(select(Trace, Prompt).join(Prompt, Prompt.id == Trace.prompt_id)
                        .where(Trace.id == trace_id)).first()
        if row is None:
            raise UserError(f"trace {trace_id} does not exist")
        t, p = row
        if p.split == Split.EVAL:
            raise UserError(f"trace {trace_id} answers an eval-split prompt; held-out prompts never become demos")
        if p.expected_behavior not in BEHAVIORS:
            raise UserError(f"trace {trace_id}: its prompt has no expected behaviour")
        a = _deciding_annotation(s, t, me.id)
        if t.status != TraceStatus.APPROVED and a is None:
            raise UserError(f"trace {trace_id} is {t.status}: only an approved trace, or one you approved or edited, "
                            "can become a demo")
        reasoning = (a.edited_reasoning if a is not None and a.edited_reasoning else t.reasoning).strip()
        response = (a.edited_response if a is not None and a.edited_response else t.response).strip()
        if not reasoning or not response:
            raise UserError(f"trace {trace_id} has an empty reasoning or reply; edit it before promoting it")
        sha = prompt_sha256(p.text)
        d = s.execute(select(Demo).where(Demo.prompt_sha256 == sha, Demo.behavior == p.expected_behavior)
                      ).scalars().first()
        if d is None:
            d = Demo(behavior=p.expected_behavior, prompt=p.text, prompt_sha256=sha)
            s.add(d)
        d.reasoning, d.response, d.source, d.trace_id, d.is_active, d.created_by = (
            reasoning, response, "review", t.id, True, me.id)
        s.flush()
        s.add(AuditEvent(actor_id=me.id, entity="demo", entity_id=d.id, action="promote",
                         after={"trace_id": t.id, "behavior": d.behavior}))
        s.commit()
        return demo_dict(d)


def _deciding_annotation(s: Session, t: Trace, user_id: int) -> Optional[Annotation]:
    """The annotation whose text a promoted demo takes: the trace's final one, else this user's approve/edit."""
    final = (t.meta or {}).get("final_annotation_id")
    if final:
        return s.get(Annotation, final)
    return s.execute(select(Annotation).where(
        Annotation.trace_id == t.id, Annotation.annotator_id == user_id,
        Annotation.decision.in_((Decision.APPROVE, Decision.NEEDS_EDIT)))).scalars().first()


def set_active(engine: Engine, user: User | int, demo_id: int, active: bool) -> None:
    with Session(write_engine(engine)) as s:
        me = require(s, user, "curate_demos")
        if s.get(Demo, demo_id) is None:
            raise UserError(f"demo {demo_id} does not exist")
        s.execute(update(Demo).where(Demo.id == demo_id).values(is_active=active))
        s.add(AuditEvent(actor_id=me.id, entity="demo", entity_id=demo_id, action="activate" if active
                         else "deactivate"))
        s.commit()


class DemoPicker:
    """Draws demos for samples from the library as it was when the run started."""

    def __init__(self, engine: Engine, *, seed: int = 0):
        ensure_shipped(engine)
        self.seed = seed
        with Session(engine) as s:
            held_out = set(s.execute(select(Prompt.sha256).where(Prompt.split == Split.EVAL)).scalars())
            demos = [demo_dict(d) for d in s.execute(select(Demo).where(Demo.is_active.is_(True))
                                                     .order_by(Demo.id)).scalars()]
        self.by_behavior: dict[str, list[dict]] = {}
        for d in demos:
            if prompt_sha256(d["prompt"]) in held_out:
                continue  # a prompt imported later as held-out: never shown again
            self.by_behavior.setdefault(d["behavior"], []).append(d)

    def pick(self, prompt: str, behavior: str, n: int, *, prompt_id: int = 0, sample: int = 0) -> list[dict]:
        """n demos for one sample: about half of its own behaviour and the rest of the others, reviewers' demos
        first, in a seeded order; never the prompt itself."""
        if n <= 0:
            return []
        rng = random.Random(f"{self.seed}:{prompt_id}:{sample}")
        own = prompt_sha256(prompt)
        others = [b for b in ("refuse", "comply") if b != behavior] or ["comply"]
        plan = [behavior if i % 2 == 0 else others[(i // 2) % len(others)] for i in range(n)]
        chosen: list[dict] = []
        for b in dict.fromkeys(plan):
            pool = [d for d in self.by_behavior.get(b, []) if prompt_sha256(d["prompt"]) != own]
            reviewed = [d for d in pool if d["source"] == "review"]
            shipped = [d for d in pool if d["source"] != "review"]
            rng.shuffle(reviewed)
            rng.shuffle(shipped)
            chosen += (reviewed + shipped)[:plan.count(b)]
        rng.shuffle(chosen)
        return chosen
