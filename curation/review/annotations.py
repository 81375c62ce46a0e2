"""Annotating, consensus, undo, adjudication and bulk decisions. Every function takes the acting user and checks
the role in curation.auth; every change writes an AuditEvent in the same transaction.

Consensus (when a trace has `overlap` annotations): all `approve` -> approved; all `reject` -> rejected;
a single `needs_edit` (overlap 1) -> approved with that edit as the final text; anything else (mixed
decisions, or several people's edits to choose between) -> needs_adjudication, which reviewers settle.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import ConflictError, PermissionDenied
from core.vocabulary import BEHAVIORS, DECISIONS, FINAL_STATUSES, OPEN_STATUSES, Decision, Role, TraceStatus
from curation.auth import require
from curation.review.audit import annotation_state, last_event, record, trace_state
from curation.review.claims import check_member, live_load
from db.engine import write_engine
from db.filters import TraceFilter
from db.models import Annotation, Claim, Prompt, Queue, QueueItem, Trace, User, utcnow


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


def set_status(s: Session, actor_id: Optional[int], t: Trace, status: str, how: Optional[str], action: str,
               final_annotation_id: Optional[int] = None) -> None:
    """The one way a trace's status changes: decision fields, final edit, version, queue-item flag and audit event,
    in the caller's transaction (which must hold the trace's row lock, or SQLite's write lock)."""
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
                      authority: User | int | None = None, now: Optional[datetime] = None) -> SubmitResult:
    """`user` annotates. Outside Argilla they must be a member of the queue holding a claim on the trace (admins
    may also annotate outside queues). An Argilla pull submits for the Argilla annotator with `authority`, the
    admin running the pull, whose rights are checked instead of the claim."""
    _validate(decision, behavior_label, quality)
    now = now or utcnow()
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "annotate")
        pulled = source == "argilla"
        if pulled:
            if authority is None:
                raise PermissionDenied("annotations from Argilla are saved only by an admin's pull")
            require(s, authority, "manage_queues")
        queue = None
        if queue_id is not None:
            queue = s.get(Queue, queue_id)
            if queue is None:
                raise ValueError(f"queue {queue_id} does not exist")
            check_member(s, me, queue)
            if not queue.is_active and not pulled:
                raise PermissionDenied(f"queue '{queue.name}' is paused")
            if not s.execute(select(QueueItem.trace_id).where(QueueItem.queue_id == queue_id,
                                                              QueueItem.trace_id == trace_id)).first():
                raise ValueError(f"trace {trace_id} is not in queue '{queue.name}'")
        elif me.role != Role.ADMIN and not pulled:
            raise PermissionDenied("annotations go through a queue")
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
        # The claim must be in this queue: its overlap decides the trace, so a claim taken in another queue with
        # a larger overlap does not let one submit here.
        in_queue = Claim.queue_id == queue_id if queue is not None else true()
        claim = s.execute(select(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id, in_queue,
                                              Claim.kind == "active")).scalars().first()
        if claim is None and queue is not None and not pulled:
            raise PermissionDenied(f"you hold no claim on trace {trace_id}: take it from the queue first")
        my_claim = claim if claim is not None and claim.expires_at > now else None
        if my_claim is None and live_load(s, trace_id, now) >= overlap:
            raise ConflictError(f"your lease on trace {trace_id} expired and others took it; not saved",
                                current=trace_state(t))
        edited_reasoning = _clean_edit(edited_reasoning, t.reasoning)
        edited_response = _clean_edit(edited_response, t.response)
        if decision == Decision.NEEDS_EDIT and edited_reasoning is None and edited_response is None:
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
        if not _maybe_decide(s, me.id, t, overlap) and t.status == TraceStatus.PENDING:
            set_status(s, me.id, t, TraceStatus.IN_REVIEW, None, "review_started")
        s.commit()
        return SubmitResult(a.id, a.version, t.status, t.version)


def _maybe_decide(s: Session, actor_id: int, t: Trace, overlap: int) -> bool:
    """Apply the consensus rule once the trace has `overlap` annotations; True when it did."""
    anns = list(s.execute(select(Annotation).where(Annotation.trace_id == t.id)
                          .order_by(Annotation.id)).scalars())
    if len(anns) < overlap:
        return False
    decisions = {a.decision for a in anns}
    if decisions == {Decision.APPROVE}:
        set_status(s, actor_id, t, TraceStatus.APPROVED, "consensus", "consensus")
    elif decisions == {Decision.REJECT}:
        set_status(s, actor_id, t, TraceStatus.REJECTED, "consensus", "consensus")
    elif decisions == {Decision.NEEDS_EDIT} and len(anns) == 1:
        set_status(s, actor_id, t, TraceStatus.APPROVED, "consensus", "consensus", final_annotation_id=anns[0].id)
    else:
        set_status(s, actor_id, t, TraceStatus.NEEDS_ADJUDICATION, None, "consensus")
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
        a, t = _own_annotation(s, me, annotation_id, "change")
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


def _own_annotation(s: Session, me: User, annotation_id: int, verb: str, missing: str = "") -> tuple[Annotation, Trace]:
    """One's own annotation and its trace, locked. The trace is locked first and the annotation read after: the
    same user in another tab may have changed or undone it meanwhile, and a copy read before the lock would be
    stale (its update or delete would match no row)."""
    trace_id = s.execute(select(Annotation.trace_id).where(Annotation.id == annotation_id)).scalar()
    t = _lock_trace(s, trace_id) if trace_id is not None else None
    a = s.execute(select(Annotation).where(Annotation.id == annotation_id)
                  .execution_options(populate_existing=True)).scalars().first() if t is not None else None
    if a is None:
        raise ValueError(f"annotation {annotation_id} does not exist{missing}")
    if a.annotator_id != me.id:
        raise PermissionDenied(f"you can {verb} only your own annotations")
    queue = s.get(Queue, a.queue_id) if a.queue_id is not None else None
    if queue is not None:
        check_member(s, me, queue)  # removed from the queue since: the annotation is no longer theirs to change
    return a, t


def undo_annotation(engine: Engine, user: User | int, annotation_id: int, *,
                    now: Optional[datetime] = None) -> int:
    """Take back one's submission: allowed while the trace is open, or while its decision is still the one this
    submission caused (nobody acted on the trace since). The trace is claimed again for the user; returns its id."""
    now = now or utcnow()
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "annotate")
        a, t = _own_annotation(s, me, annotation_id, "undo", " (already undone?)")
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
        target = TraceStatus.IN_REVIEW if left else TraceStatus.PENDING
        if t.status != target:
            set_status(s, me.id, t, target, None, "undo")
        if queue_id is not None:
            queue = s.get(Queue, queue_id)
            s.execute(delete(Claim).where(Claim.trace_id == t.id, Claim.user_id == me.id))
            s.add(Claim(trace_id=t.id, user_id=me.id, queue_id=queue_id, claimed_at=now,
                        expires_at=now + timedelta(seconds=queue.lease_seconds)))
        s.commit()
        return t.id


def adjudicate(engine: Engine, user: User | int, trace_id: int, status: str, trace_version: int, *,
               final_annotation_id: Optional[int] = None, comment: str = "", edited_reasoning: Optional[str] = None,
               edited_response: Optional[str] = None, behavior_label: Optional[str] = None) -> int:
    """A reviewer settles a trace: approved or rejected, choosing whose edit is final, or approved with the
    reviewer's own edit (kept as the reviewer's annotation outside any queue, so agreement never counts it)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"status '{status}' is not one of {', '.join(FINAL_STATUSES)}")
    own = edited_reasoning is not None or edited_response is not None
    if own and (status != TraceStatus.APPROVED or final_annotation_id is not None):
        raise ValueError("your own edit is the final text of an approved trace: approve it, without choosing "
                         "an annotator's edit")
    _validate(Decision.NEEDS_EDIT, behavior_label, None)
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
        if own:
            final_annotation_id = _adjudicator_edit(s, me, t, edited_reasoning, edited_response, behavior_label,
                                                    comment)
        set_status(s, me.id, t, status, "adjudication", "adjudicate", final_annotation_id)
        if comment:
            ev_after = trace_state(t) | {"comment": comment}
            record(s, me.id, "trace", t.id, "adjudication_comment", None, ev_after)
        s.commit()
        return t.version


def _adjudicator_edit(s: Session, me: User, t: Trace, reasoning: Optional[str], response: Optional[str],
                      behavior_label: Optional[str], comment: str) -> int:
    reasoning, response = _clean_edit(reasoning, t.reasoning), _clean_edit(response, t.response)
    if reasoning is None and response is None:
        raise ValueError("your edit is the same as the model's text: approve the model's original instead")
    if s.execute(select(Annotation.id).where(Annotation.trace_id == t.id, Annotation.annotator_id == me.id)).first():
        raise ValueError(f"you annotated trace {t.id} yourself, so your edit cannot be a separate final text: "
                         "choose an edit, or let another reviewer settle it")
    now = utcnow()
    a = Annotation(trace_id=t.id, annotator_id=me.id, queue_id=None, decision=Decision.NEEDS_EDIT,
                   behavior_label=behavior_label, edited_reasoning=reasoning, edited_response=response,
                   comment=comment or "", source="ui", trace_version=t.version, created_at=now, updated_at=now)
    s.add(a)
    s.flush()
    record(s, me.id, "annotation", a.id, "adjudicator_edit", None, annotation_state(a))
    return a.id


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
                    set_status(s, me.id, t, status, "bulk", "bulk")
        s.commit()
        return len(ids)


def auto_decide(engine: Engine, user: User | int | None, decisions: dict[int, str], *,
                action: str = "auto_filter") -> int:
    """Set many traces' statuses from an automatic filter (decided_how "auto"); returns how many changed.
    `user` None is the local operator (the CLI); anyone else needs the right to run the loop."""
    bad = sorted({st for st in decisions.values() if st not in (*FINAL_STATUSES, TraceStatus.PENDING)})
    if bad:
        raise ValueError(f"auto decisions must be approved, rejected or pending, not {bad}")
    changed = 0
    with Session(write_engine(engine), expire_on_commit=False) as s:
        actor = require(s, user, "train").id if user is not None else None
        ids = sorted(decisions)
        for i in range(0, len(ids), 500):
            for t in s.execute(select(Trace).where(Trace.id.in_(ids[i:i + 500])).with_for_update()).scalars():
                status = decisions[t.id]
                if t.status != status:
                    set_status(s, actor, t, status, "auto" if status in FINAL_STATUSES else None, action)
                    changed += 1
        s.commit()
    return changed
