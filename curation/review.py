"""Annotating, consensus, undo, adjudication and bulk decisions. Every function takes the acting user and checks
the role in curation.auth; every change writes an AuditEvent in the same transaction.

Consensus (when a trace has `overlap` annotations): all `approve` -> approved; all `reject` -> rejected;
a single `needs_edit` (overlap 1) -> approved with that edit as the final text; anything else (mixed
decisions, or several people's edits to choose between) -> needs_adjudication, which reviewers settle.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Optional

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.audit import annotation_state, last_event, record, trace_state
from curation.auth import ADMIN, PermissionDenied, require
from curation.queues import OPEN_STATUSES, TraceFilter, _check_member, live_load
from db.engine import write_engine
from db.models import (BEHAVIORS, DECISIONS, Annotation, AutoLabel, Claim, Prompt, PromptSet, Queue, QueueItem,
                       Trace, User, UserSetting, utcnow)

FINAL_STATUSES = ("approved", "rejected")


class ConflictError(Exception):
    """The row changed since the caller loaded it. `current` is its state now; `other_change` the audit event
    that changed it (who, when, before/after), so the page can show it and nothing is silently lost."""

    def __init__(self, message: str, *, current: Any = None, other_change: Optional[dict] = None):
        super().__init__(message)
        self.current = current
        self.other_change = other_change


@dataclass
class SubmitResult:
    annotation_id: int
    annotation_version: int
    trace_status: str
    trace_version: int


def _lock_trace(s: Session, trace_id: int) -> Trace:
    t = s.execute(select(Trace).where(Trace.id == trace_id).with_for_update()).scalars().first()
    if t is None:
        raise ValueError(f"trace {trace_id} does not exist")
    return t


def _set_status(s: Session, actor_id: int, t: Trace, status: str, how: Optional[str], action: str,
                final_annotation_id: Optional[int] = None) -> None:
    before = trace_state(t)
    t.status = status
    if status in FINAL_STATUSES:
        t.decided_by, t.decided_how, t.decided_at = actor_id, how, utcnow()
    else:
        t.decided_by = t.decided_how = t.decided_at = None
    meta = dict(t.meta or {})
    if final_annotation_id is not None:
        meta["final_annotation_id"] = final_annotation_id
    elif status not in FINAL_STATUSES:
        meta.pop("final_annotation_id", None)
    t.meta = meta
    t.version += 1
    s.flush()
    s.execute(update(QueueItem).where(QueueItem.trace_id == t.id).values(is_open=status in OPEN_STATUSES))
    record(s, actor_id, "trace", t.id, action, before, trace_state(t))


def _validate(decision: str, behavior_label: Optional[str], quality: Optional[int]) -> None:
    if decision not in DECISIONS:
        raise ValueError(f"field 'decision': '{decision}' is not one of {', '.join(DECISIONS)}")
    if behavior_label is not None and behavior_label not in BEHAVIORS:
        raise ValueError(f"field 'behavior_label': '{behavior_label}' is not one of {', '.join(BEHAVIORS)}")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 5):
        raise ValueError(f"field 'quality': {quality!r} is not an integer from 1 to 5")


def _clean_edit(edited: Optional[str], original: str) -> Optional[str]:
    """An edit identical to the model's text is no edit."""
    if edited is None or edited.strip() == original.strip():
        return None
    return edited


def submit_annotation(engine: Engine, user: User | int, trace_id: int, *, decision: str, trace_version: int,
                      queue_id: Optional[int] = None, behavior_label: Optional[str] = None,
                      reasoning_sound: Optional[bool] = None, harm_categories: list[str] = (),
                      quality: Optional[int] = None, edited_reasoning: Optional[str] = None,
                      edited_response: Optional[str] = None, comment: str = "",
                      seconds_spent: Optional[float] = None, source: str = "ui",
                      now: Optional[datetime] = None) -> SubmitResult:
    _validate(decision, behavior_label, quality)
    now = now or utcnow()
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "annotate")
        queue = None
        if queue_id is not None:
            queue = s.get(Queue, queue_id)
            if queue is None:
                raise ValueError(f"queue {queue_id} does not exist")
            _check_member(s, me, queue)
            if not s.execute(select(QueueItem.trace_id).where(QueueItem.queue_id == queue_id,
                                                              QueueItem.trace_id == trace_id)).first():
                raise ValueError(f"trace {trace_id} is not in queue '{queue.name}'")
        elif me.role != ADMIN and source == "ui":
            raise PermissionDenied("annotations from the UI go through a queue")
        t = _lock_trace(s, trace_id)
        if t.status not in OPEN_STATUSES:
            raise ConflictError(f"trace {trace_id} was decided meanwhile ({t.status}); your annotation was not "
                                "saved", current=trace_state(t), other_change=last_event(s, "trace", t.id))
        if t.version != trace_version and t.version < trace_version:
            raise ValueError(f"trace {trace_id} has no version {trace_version}")
        mine = s.execute(select(Annotation).where(Annotation.trace_id == trace_id,
                                                  Annotation.annotator_id == me.id)).scalars().first()
        if mine is not None:
            raise ConflictError(f"you already annotated trace {trace_id} (another tab?)",
                                current=annotation_state(mine), other_change=last_event(s, "annotation", mine.id))
        overlap = queue.overlap if queue else 1
        my_claim = s.execute(select(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id,
                                                 Claim.kind == "active", Claim.expires_at > now)).scalars().first()
        if my_claim is None and live_load(s, trace_id, now) >= overlap:
            raise ConflictError(f"your lease on trace {trace_id} expired and others took it; not saved",
                                current=trace_state(t))
        edited_reasoning = _clean_edit(edited_reasoning, t.reasoning)
        edited_response = _clean_edit(edited_response, t.response)
        if decision == "needs_edit" and edited_reasoning is None and edited_response is None:
            raise ValueError("decision 'needs_edit' needs an edited reasoning or response that differs from "
                             "the model's")
        a = Annotation(trace_id=trace_id, annotator_id=me.id, queue_id=queue_id, decision=decision,
                       behavior_label=behavior_label, reasoning_sound=reasoning_sound,
                       harm_categories=sorted(set(harm_categories)), quality=quality,
                       edited_reasoning=edited_reasoning, edited_response=edited_response, comment=comment or "",
                       seconds_spent=seconds_spent, source=source, trace_version=trace_version,
                       created_at=now, updated_at=now)
        s.add(a)
        s.execute(delete(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id))
        s.flush()
        record(s, me.id, "annotation", a.id, "create", None, annotation_state(a))
        if not _maybe_decide(s, me.id, t, overlap) and t.status == "pending":
            _set_status(s, me.id, t, "in_review", None, "review_started")
        s.commit()
        return SubmitResult(a.id, a.version, t.status, t.version)


def _maybe_decide(s: Session, actor_id: int, t: Trace, overlap: int) -> bool:
    """Apply the consensus rule once the trace has `overlap` annotations; True when it did."""
    anns = list(s.execute(select(Annotation).where(Annotation.trace_id == t.id)
                          .order_by(Annotation.id)).scalars())
    if len(anns) < overlap:
        return False
    decisions = {a.decision for a in anns}
    if decisions == {"approve"}:
        _set_status(s, actor_id, t, "approved", "consensus", "consensus")
    elif decisions == {"reject"}:
        _set_status(s, actor_id, t, "rejected", "consensus", "consensus")
    elif decisions == {"needs_edit"} and len(anns) == 1:
        _set_status(s, actor_id, t, "approved", "consensus", "consensus", final_annotation_id=anns[0].id)
    else:
        _set_status(s, actor_id, t, "needs_adjudication", None, "consensus")
    return True


def update_annotation(engine: Engine, user: User | int, annotation_id: int, expected_version: int,
                      **changes: Any) -> SubmitResult:
    """Change one's own annotation while the trace is still open (optimistic lock on the annotation)."""
    allowed = {"decision", "behavior_label", "reasoning_sound", "harm_categories", "quality", "edited_reasoning",
               "edited_response", "comment"}
    bad = sorted(set(changes) - allowed)
    if bad:
        raise ValueError(f"cannot change field(s) {bad}")
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "annotate")
        a = _own_annotation(s, me, annotation_id, "change")
        t = _lock_trace(s, a.trace_id)
        if a.version != expected_version:
            raise ConflictError(f"annotation {a.id} changed since you loaded it (version {a.version}, you had "
                                f"{expected_version})", current=annotation_state(a),
                                other_change=last_event(s, "annotation", a.id))
        if t.status not in OPEN_STATUSES:
            raise ConflictError(f"trace {t.id} was decided meanwhile ({t.status})", current=trace_state(t),
                                other_change=last_event(s, "trace", t.id))
        merged = {**annotation_state(a), **changes}
        _validate(merged["decision"], merged["behavior_label"], merged["quality"])
        before = annotation_state(a)
        for k, v in changes.items():
            if k == "edited_reasoning":
                v = _clean_edit(v, t.reasoning)
            elif k == "edited_response":
                v = _clean_edit(v, t.response)
            setattr(a, k, v)
        a.version += 1
        a.updated_at = utcnow()
        s.flush()
        record(s, me.id, "annotation", a.id, "update", before, annotation_state(a))
        s.commit()
        return SubmitResult(a.id, a.version, t.status, t.version)


def _own_annotation(s: Session, me: User, annotation_id: int, verb: str, missing: str = "") -> Annotation:
    a = s.get(Annotation, annotation_id)
    if a is None:
        raise ValueError(f"annotation {annotation_id} does not exist{missing}")
    if a.annotator_id != me.id:
        raise PermissionDenied(f"you can {verb} only your own annotations")
    return a


def undo_annotation(engine: Engine, user: User | int, annotation_id: int, *,
                    now: Optional[datetime] = None) -> int:
    """Take back one's submission: allowed while the trace is open, or while its decision is still the one this
    submission caused (nobody acted on the trace since). The trace is claimed again for the user; returns its id."""
    now = now or utcnow()
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "annotate")
        a = _own_annotation(s, me, annotation_id, "undo", " (already undone?)")
        t = _lock_trace(s, a.trace_id)
        if t.status not in OPEN_STATUSES:
            ev = last_event(s, "trace", t.id)
            if not (ev and ev["action"] == "consensus" and ev["actor_id"] == me.id
                    and ev["after"]["version"] == t.version):
                raise ConflictError(f"trace {t.id} was decided since ({t.status}); undo is no longer possible",
                                    current=trace_state(t), other_change=ev)
        before = annotation_state(a)
        queue_id = a.queue_id
        s.delete(a)
        s.flush()
        record(s, me.id, "annotation", annotation_id, "delete", before, None)
        left = s.execute(select(func.count(Annotation.id)).where(Annotation.trace_id == t.id)).scalar_one()
        target = "in_review" if left else "pending"
        if t.status != target:
            _set_status(s, me.id, t, target, None, "undo")
        if queue_id is not None:
            queue = s.get(Queue, queue_id)
            old = s.execute(select(Claim).where(Claim.trace_id == t.id, Claim.user_id == me.id)).scalars().first()
            if old is not None:
                s.delete(old)
                s.flush()
            s.add(Claim(trace_id=t.id, user_id=me.id, queue_id=queue_id, claimed_at=now,
                        expires_at=now + timedelta(seconds=queue.lease_seconds)))
        s.commit()
        return t.id


def adjudicate(engine: Engine, user: User | int, trace_id: int, status: str, trace_version: int, *,
               final_annotation_id: Optional[int] = None, comment: str = "") -> int:
    """A reviewer settles a trace: approved or rejected, optionally choosing whose edit is final."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"status '{status}' is not one of {', '.join(FINAL_STATUSES)}")
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "adjudicate")
        t = _lock_trace(s, trace_id)
        if t.version != trace_version:
            raise ConflictError(f"trace {trace_id} changed since you loaded it (version {t.version}, you had "
                                f"{trace_version})", current=trace_state(t), other_change=last_event(s, "trace", t.id))
        if final_annotation_id is not None:
            a = s.get(Annotation, final_annotation_id)
            if a is None or a.trace_id != trace_id:
                raise ValueError(f"annotation {final_annotation_id} is not an annotation of trace {trace_id}")
        _set_status(s, me.id, t, status, "adjudication", "adjudicate", final_annotation_id)
        if comment:
            ev_after = trace_state(t) | {"comment": comment}
            record(s, me.id, "trace", t.id, "adjudication_comment", None, ev_after)
        s.commit()
        return t.version


def bulk_decide(engine: Engine, user: User | int, flt: TraceFilter | dict, status: str, *,
                expected_count: int) -> int:
    """Admins: set every trace matching the filter to approved/rejected. `expected_count` is the count the admin
    confirmed; if the filter matches a different number now, nothing happens."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"status '{status}' is not one of {', '.join(FINAL_STATUSES)}")
    flt = flt if isinstance(flt, TraceFilter) else TraceFilter.from_dict(flt)
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "bulk")
        ids = list(s.execute(flt.apply(select(Trace.id).join(Prompt, Prompt.id == Trace.prompt_id))
                             .order_by(Trace.id)).scalars())
        if len(ids) != expected_count:
            raise ConflictError(f"the filter matches {len(ids)} traces now, not the {expected_count} you confirmed; "
                                "nothing was changed", current=len(ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for t in s.execute(select(Trace).where(Trace.id.in_(chunk)).with_for_update()).scalars():
                if t.status != status:
                    _set_status(s, me.id, t, status, "bulk", "bulk")
        s.commit()
        return len(ids)


# -- reading ----------------------------------------------------------------------------------------------------
def load_item(engine: Engine, user: User | int, trace_id: int) -> dict[str, Any]:
    """Everything the review page shows for one trace. Annotators may open only traces they hold a claim on."""
    with Session(engine) as s:
        me = require(s, user, "annotate")
        if me.role not in ("reviewer", "admin"):
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
        blur = set(setting.blur_categories) if setting else set()
        return {
            "trace_id": t.id, "trace_version": t.version, "status": t.status, "reasoning": t.reasoning,
            "response": t.response, "parse_ok": t.parse_ok, "strategy": t.strategy, "model": t.model,
            "prompt_id": p.id, "prompt": p.text, "set": set_name, "expected_behavior": p.expected_behavior,
            "mutation": p.mutation, "category": p.category, "parent_prompt": parent.text if parent else None,
            "auto_labels": [{"kind": a.kind, "agent": a.agent, "label": a.label, "score": a.score,
                             "rationale": a.rationale} for a in labels],
            "blur": bool(p.category and p.category.lower() in {b.lower() for b in blur}),
        }


def text_diff(original: str, edited: str) -> str:
    """A unified diff of an edit against the model's original (shown as text)."""
    return "\n".join(difflib.unified_diff(original.splitlines(), edited.splitlines(), "model", "edited",
                                          lineterm=""))


def final_text(engine: Engine, trace_id: int) -> dict[str, Any]:
    """The text an approved trace exports: the chosen annotation's edit where there is one, else the model's."""
    with Session(engine) as s:
        t = s.get(Trace, trace_id)
        if t is None:
            raise ValueError(f"trace {trace_id} does not exist")
        ann_id = (t.meta or {}).get("final_annotation_id")
        a = s.get(Annotation, ann_id) if ann_id else None
        return {"status": t.status, "reasoning": (a.edited_reasoning if a and a.edited_reasoning else t.reasoning),
                "response": (a.edited_response if a and a.edited_response else t.response),
                "edited": bool(a and (a.edited_reasoning or a.edited_response)),
                "original_reasoning": t.reasoning, "original_response": t.response}


def adjudication_items(engine: Engine, user: User | int, *, limit: int = 20) -> list[dict[str, Any]]:
    """Traces waiting for a reviewer, each with all its annotations (side by side on the page)."""
    with Session(engine) as s:
        require(s, user, "adjudicate")
        traces = list(s.execute(select(Trace.id).where(Trace.status == "needs_adjudication")
                                .order_by(Trace.id).limit(limit)).scalars())
        out = []
        for tid in traces:
            item = load_item(engine, user, tid)
            item["annotations"] = [
                {**annotation_state(a), "annotator": name} for a, name in s.execute(
                    select(Annotation, User.username).join(User, User.id == Annotation.annotator_id)
                    .where(Annotation.trace_id == tid).order_by(Annotation.id)).all()]
            out.append(item)
        return out


def browse(engine: Engine, user: User | int, flt: TraceFilter | dict | None = None, *, limit: int = 50,
           offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """One page of traces matching a filter (server-side), and the total count."""
    flt = flt if isinstance(flt, TraceFilter) else TraceFilter.from_dict(flt)
    with Session(engine) as s:
        require(s, user, "browse")
        base = flt.apply(select(Trace.id).join(Prompt, Prompt.id == Trace.prompt_id)).subquery()
        total = s.execute(select(func.count()).select_from(base)).scalar_one()
        n_ann = (select(func.count(Annotation.id)).where(Annotation.trace_id == Trace.id).scalar_subquery())
        rows = s.execute(
            flt.apply(select(Trace.id, Trace.status, PromptSet.name.label("set"), Prompt.expected_behavior,
                             Prompt.mutation, Prompt.text.label("prompt"), Trace.response, Trace.version,
                             Trace.decided_how, n_ann.label("annotations"))
                      .join(Prompt, Prompt.id == Trace.prompt_id).join(PromptSet, PromptSet.id == Prompt.set_id))
            .order_by(Trace.id).limit(limit).offset(offset)).all()
        out = [dict(r._mapping) for r in rows]
        ids = [r["id"] for r in out]
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


def get_settings(engine: Engine, user: User | int) -> dict[str, Any]:
    with Session(engine) as s:
        me = require(s, user, "own_settings")
        st = s.get(UserSetting, me.id)
        return {"blur_categories": list(st.blur_categories) if st else [], "version": st.version if st else 0}


def save_settings(engine: Engine, user: User | int, blur_categories: list[str], expected_version: int) -> int:
    with Session(write_engine(engine)) as s:
        me = require(s, user, "own_settings")
        st = s.get(UserSetting, me.id)
        current = st.version if st else 0
        if current != expected_version:
            raise ConflictError("your settings were changed in another tab", current=current)
        before = {"blur_categories": list(st.blur_categories)} if st else None
        if st is None:
            st = UserSetting(user_id=me.id, blur_categories=sorted(set(blur_categories)))
            s.add(st)
        else:
            st.blur_categories = sorted(set(blur_categories))
            st.version += 1
            st.updated_at = utcnow()
        s.flush()
        record(s, me.id, "user_setting", me.id, "update", before, {"blur_categories": st.blur_categories})
        s.commit()
        return st.version


def harm_categories(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted({c for c in s.execute(select(Prompt.category).where(Prompt.category.is_not(None))
                                            .distinct()).scalars() if c})
