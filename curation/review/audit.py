"""The audit log: one AuditEvent per change, written in the transaction that makes the change."""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.auth import require
from db.models import Annotation, AuditEvent, Trace, User


def trace_state(t: Trace) -> dict[str, Any]:
    return {"status": t.status, "decided_by": t.decided_by, "decided_how": t.decided_how,
            "decided_at": t.decided_at.isoformat() if t.decided_at else None, "version": t.version,
            "final_annotation_id": (t.meta or {}).get("final_annotation_id")}


def annotation_state(a: Annotation) -> dict[str, Any]:
    return {"id": a.id, "trace_id": a.trace_id, "annotator_id": a.annotator_id, "queue_id": a.queue_id,
            "decision": a.decision, "behavior_label": a.behavior_label, "reasoning_sound": a.reasoning_sound,
            "harm_categories": list(a.harm_categories or []), "quality": a.quality,
            "edited_reasoning": a.edited_reasoning, "edited_response": a.edited_response, "comment": a.comment,
            "seconds_spent": a.seconds_spent, "source": a.source, "version": a.version}


def record(session: Session, actor_id: Optional[int], entity: str, entity_id: int, action: str,
           before: Optional[dict] = None, after: Optional[dict] = None) -> None:
    session.add(AuditEvent(actor_id=actor_id, entity=entity, entity_id=entity_id, action=action,
                           before=before, after=after))


def last_event(session: Session, entity: str, entity_id: int) -> Optional[dict[str, Any]]:
    row = session.execute(
        select(AuditEvent, User.username).outerjoin(User, User.id == AuditEvent.actor_id)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == entity_id)
        .order_by(AuditEvent.id.desc()).limit(1)).first()
    return _event_dict(*row) if row else None


def _event_dict(ev: AuditEvent, username: Optional[str]) -> dict[str, Any]:
    return {"id": ev.id, "at": ev.at, "actor": username, "actor_id": ev.actor_id, "entity": ev.entity,
            "entity_id": ev.entity_id, "action": ev.action, "before": ev.before, "after": ev.after}


def trace_history(engine: Engine, user: User | int, trace_id: int) -> list[dict[str, Any]]:
    """Everything that happened to a trace and its annotations, oldest first (reviewers and admins)."""
    with Session(engine) as s:
        require(s, user, "browse")
        ann_ids = select(Annotation.id).where(Annotation.trace_id == trace_id).scalar_subquery()
        # Deleted (undone) annotations no longer exist; their events carry the trace id in before/after.
        rows = s.execute(
            select(AuditEvent, User.username).outerjoin(User, User.id == AuditEvent.actor_id)
            .where(((AuditEvent.entity == "trace") & (AuditEvent.entity_id == trace_id))
                   | ((AuditEvent.entity == "annotation") & AuditEvent.entity_id.in_(ann_ids)))
            .order_by(AuditEvent.id)).all()
        events = [_event_dict(ev, name) for ev, name in rows]
        gone = s.execute(
            select(AuditEvent, User.username).outerjoin(User, User.id == AuditEvent.actor_id)
            .where(AuditEvent.entity == "annotation", AuditEvent.action == "delete")
            .order_by(AuditEvent.id)).all()
        seen = {e["id"] for e in events}
        deleted_ids = {ev.entity_id for ev, _ in gone if (ev.before or {}).get("trace_id") == trace_id}
        if deleted_ids:
            more = s.execute(
                select(AuditEvent, User.username).outerjoin(User, User.id == AuditEvent.actor_id)
                .where(AuditEvent.entity == "annotation", AuditEvent.entity_id.in_(deleted_ids))).all()
            events += [_event_dict(ev, n) for ev, n in more if ev.id not in seen]
        return sorted(events, key=lambda e: e["id"])


def event_changes(event: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """What one event changed, field by field: (field, before, after) for every field whose value differs (a
    created row has no before, a deleted one no after). Row ids and versions are left out (the event names the
    row; every change bumps the version), and so are fields that are empty on both sides."""
    before, after = event.get("before") or {}, event.get("after") or {}
    fields = [k for k in dict.fromkeys([*before, *after]) if k not in _BOOKKEEPING]
    return [(k, before.get(k), after.get(k)) for k in fields
            if before.get(k) != after.get(k) and (before.get(k) or after.get(k))]


_BOOKKEEPING = {"id", "trace_id", "annotator_id", "queue_id", "version", "seconds_spent"}
