"""What review pages read: one trace with its labels, the final text of a decided trace, adjudication items,
browse pages, activity, and the harm categories in use."""
from __future__ import annotations

import difflib
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import PermissionDenied
from core.vocabulary import Role, TraceStatus, sensitive_by_default
from curation.auth import require
from curation.review.audit import annotation_state
from db.filters import TraceFilter
from db.models import Annotation, AutoLabel, Claim, Prompt, PromptSet, Trace, User, UserSetting, utcnow


def load_item(engine: Engine, user: User | int, trace_id: int) -> dict[str, Any]:
    """Everything the review page shows for one trace. Annotators may open only traces they hold a claim on."""
    with Session(engine) as s:
        me = require(s, user, "annotate")
        if me.role == Role.ANNOTATOR:
            held = s.execute(select(Claim.id).where(Claim.trace_id == trace_id, Claim.user_id == me.id)).first()
            done = s.execute(select(Annotation.id).where(Annotation.trace_id == trace_id,
                                                         Annotation.annotator_id == me.id)).first()
            if not (held or done):
                raise PermissionDenied(f"trace {trace_id} is not claimed by you")
        row = s.execute(select(Trace, Prompt, PromptSet.name).join(Prompt, Prompt.id == Trace.prompt_id)
                        .join(PromptSet, PromptSet.id == Prompt.set_id).where(Trace.id == trace_id)).first()
        if row is None:
            raise ValueError(f"trace {trace_id} does not exist")
        t, p, set_name = row
        parent = s.get(Prompt, p.parent_prompt_id) if p.parent_prompt_id else None
        labels = s.execute(select(AutoLabel).where(AutoLabel.trace_id == trace_id)
                           .order_by(AutoLabel.kind, AutoLabel.agent)).scalars()
        setting = s.get(UserSetting, me.id)
        if setting is not None:
            blurred = bool(p.category and p.category.lower() in {b.lower() for b in setting.blur_categories})
        else:  # never chose: the most distressing categories start hidden
            blurred = sensitive_by_default(p.category)
        return {
            "trace_id": t.id, "trace_version": t.version, "status": t.status, "reasoning": t.reasoning,
            "response": t.response, "parse_ok": t.parse_ok, "strategy": t.strategy, "model": t.model,
            "prompt_id": p.id, "prompt": p.text, "set": set_name, "expected_behavior": p.expected_behavior,
            "mutation": p.mutation, "category": p.category, "parent_prompt": parent.text if parent else None,
            "auto_labels": [{"kind": a.kind, "agent": a.agent, "label": a.label, "score": a.score,
                             "rationale": a.rationale} for a in labels],
            "blur": blurred,
        }


def text_diff(original: str, edited: str) -> str:
    """A unified diff of an edit against the model's original (shown as text)."""
    return "\n".join(difflib.unified_diff(original.splitlines(), edited.splitlines(), "model", "edited",
                                          lineterm=""))


def final_text(engine: Engine, user: User | int, trace_id: int) -> dict[str, Any]:
    """The text an approved trace exports: the chosen annotation's edit where there is one, else the model's
    (reviewers and admins)."""
    with Session(engine) as s:
        require(s, user, "browse")
        t = s.get(Trace, trace_id)
        if t is None:
            raise ValueError(f"trace {trace_id} does not exist")
        ann_id = (t.meta or {}).get("final_annotation_id")
        a = s.get(Annotation, ann_id) if ann_id else None
        return {"status": t.status, "reasoning": (a.edited_reasoning if a and a.edited_reasoning else t.reasoning),
                "response": (a.edited_response if a and a.edited_response else t.response),
                "edited": bool(a and (a.edited_reasoning or a.edited_response)),
                "original_reasoning": t.reasoning, "original_response": t.response}


def adjudication_items(engine: Engine, user: User | int, *, limit: int = 20, after_id: int = 0
                       ) -> tuple[int, list[dict[str, Any]]]:
    """How many traces wait for a reviewer, and the next `limit` of them after trace `after_id` (wrapping to the
    start), each with all its annotations and their annotators' names."""
    with Session(engine) as s:
        require(s, user, "adjudicate")
        waiting = Trace.status == TraceStatus.NEEDS_ADJUDICATION
        total = s.execute(select(func.count(Trace.id)).where(waiting)).scalar_one()
        traces = list(s.execute(select(Trace.id).where(waiting, Trace.id > after_id)
                                .order_by(Trace.id).limit(limit)).scalars())
        if len(traces) < limit and after_id:
            traces += [t for t in s.execute(select(Trace.id).where(waiting, Trace.id <= after_id)
                                            .order_by(Trace.id).limit(limit - len(traces))).scalars()
                       if t not in traces]
        out = []
        for tid in traces:
            item = load_item(engine, user, tid)
            item["annotations"] = [
                {**annotation_state(a), "annotator": name} for a, name in s.execute(
                    select(Annotation, User.username).join(User, User.id == Annotation.annotator_id)
                    .where(Annotation.trace_id == tid).order_by(Annotation.id)).all()]
            out.append(item)
        return total, out


def browse(engine: Engine, user: User | int, flt: TraceFilter | dict | None = None, *, limit: int = 50,
           offset: int = 0, count: bool = True) -> tuple[int | None, list[dict[str, Any]]]:
    """One page of traces matching a filter (server-side), and the total count (None with count=False: at a
    million traces the count is most of the cost, and a page that already knows it need not pay twice)."""
    flt = flt if isinstance(flt, TraceFilter) else TraceFilter.from_dict(flt)
    with Session(engine) as s:
        require(s, user, "browse")
        matching = flt.apply(select(Trace.id).join(Prompt, Prompt.id == Trace.prompt_id))
        total = s.execute(select(func.count()).select_from(matching.subquery())).scalar_one() if count else None
        # The page's ids first (the filter and the offset walk narrow index rows), then the 50 rows' details:
        # joining and counting annotations for every skipped row made deep pages slow.
        ids = list(s.execute(matching.order_by(Trace.id).limit(limit).offset(offset)).scalars())
        n_ann = (select(func.count(Annotation.id)).where(Annotation.trace_id == Trace.id).scalar_subquery())
        rows = s.execute(
            select(Trace.id, Trace.status, PromptSet.name.label("set"), Prompt.expected_behavior,
                   Prompt.mutation, Prompt.text.label("prompt"), Trace.response, Trace.version,
                   Trace.decided_how, n_ann.label("annotations"))
            .join(Prompt, Prompt.id == Trace.prompt_id).join(PromptSet, PromptSet.id == Prompt.set_id)
            .where(Trace.id.in_(ids or [-1])).order_by(Trace.id)).all()
        out = [dict(r._mapping) for r in rows]
        labels: dict[int, list[str]] = {}
        for tid, kind, label in s.execute(select(AutoLabel.trace_id, AutoLabel.kind, AutoLabel.label)
                                          .where(AutoLabel.trace_id.in_(ids or [-1]))):
            labels.setdefault(tid, []).append(f"{kind}={label}")
        for r in out:
            r["auto_labels"] = ", ".join(labels.get(r["id"], []))
        return total, out


def activity(engine: Engine, user: User | int, *, days: int = 14) -> list[dict[str, Any]]:
    """Items seen per user per day (annotations + skips), for admins watching workload."""
    since = utcnow() - timedelta(days=days)
    with Session(engine) as s:
        require(s, user, "view_activity")
        counts: dict[tuple[str, date], dict[str, int]] = {}
        for name, at in s.execute(select(User.username, Annotation.created_at)
                                  .join(User, User.id == Annotation.annotator_id)
                                  .where(Annotation.created_at >= since)):
            counts.setdefault((name, at.date()), {"annotated": 0, "skipped": 0})["annotated"] += 1
        for name, at in s.execute(select(User.username, Claim.claimed_at).join(User, User.id == Claim.user_id)
                                  .where(Claim.kind == "skip", Claim.claimed_at >= since)):
            counts.setdefault((name, at.date()), {"annotated": 0, "skipped": 0})["skipped"] += 1
        return [{"user": k[0], "day": k[1].isoformat(), **v, "seen": v["annotated"] + v["skipped"]}
                for k, v in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]), reverse=True)]


def harm_categories(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted({c for c in s.execute(select(Prompt.category).where(Prompt.category.is_not(None))
                                            .distinct()).scalars() if c})
