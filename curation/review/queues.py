"""Review queues: a trace filter materialised into queue items, members, progress and the queues a user may
work. Claiming items lives in curation.review.claims."""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import and_, case, delete, exists, func, insert, literal, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import ConflictError
from core.vocabulary import FINAL_STATUSES, OPEN_STATUSES, Role, TraceStatus
from curation.auth import check, require
from curation.review.audit import record
from curation.review.claims import load_queue_for
from db.engine import refresh_statistics, write_engine
from db.filters import TraceFilter, flagged_expr
from db.models import Annotation, Claim, Prompt, Queue, QueueItem, QueueMember, Trace, User, utcnow


def _queue_dict(q: Queue) -> dict[str, Any]:
    return {"id": q.id, "name": q.name, "filter": q.filter, "overlap": q.overlap, "lease_seconds": q.lease_seconds,
            "is_active": q.is_active, "version": q.version}


def _materialise(s: Session, queue: Queue) -> int:
    """Add the traces matching the queue's filter that are not in it yet; returns how many were added."""
    flt = TraceFilter.from_dict(queue.filter)
    already = exists().where(QueueItem.queue_id == queue.id, QueueItem.trace_id == Trace.id)
    sel = flt.apply(select(literal(queue.id), Trace.id, case((flagged_expr(), 0), else_=1),
                           Trace.status.in_(OPEN_STATUSES), literal(utcnow()))
                    .join(Prompt, Prompt.id == Trace.prompt_id).where(~already))
    res = s.execute(insert(QueueItem).from_select(["queue_id", "trace_id", "priority", "is_open", "added_at"], sel))
    return res.rowcount or 0


def create_queue(engine: Engine, user: User | int, name: str, flt: dict[str, Any] | TraceFilter, *,
                 overlap: int = 1, members: list[int] = (), lease_seconds: int = 600,
                 description: str = "") -> Queue:
    flt = flt if isinstance(flt, TraceFilter) else TraceFilter.from_dict(flt)
    flt.validate()
    if not name.strip():
        raise ValueError("queue name is empty")
    if overlap < 1:
        raise ValueError("overlap must be at least 1")
    if lease_seconds < 10:
        raise ValueError("lease_seconds must be at least 10")
    with Session(write_engine(engine), expire_on_commit=False) as s:
        admin = require(s, user, "manage_queues")
        if s.execute(select(Queue.id).where(Queue.name == name.strip())).first():
            raise ValueError(f"queue '{name.strip()}' already exists")
        q = Queue(name=name.strip(), filter=flt.to_dict(), overlap=overlap, lease_seconds=lease_seconds,
                  description=description, created_by=admin.id)
        s.add(q)
        s.flush()
        added = _materialise(s, q)
        _set_members(s, q, list(members))
        record(s, admin.id, "queue", q.id, "create", None, {**_queue_dict(q), "items_added": added,
                                                              "members": sorted(members)})
        s.commit()
    refresh_statistics(engine, ("queue_item", "trace"), added)  # claiming plans from real numbers
    return q


def _set_members(s: Session, q: Queue, user_ids: list[int]) -> None:
    found = set(s.execute(select(User.id).where(User.id.in_(user_ids))).scalars())
    missing = sorted(set(user_ids) - found)
    if missing:
        raise ValueError(f"unknown user id(s) {missing}")
    s.execute(delete(QueueMember).where(QueueMember.queue_id == q.id))
    for uid in sorted(set(user_ids)):
        s.add(QueueMember(queue_id=q.id, user_id=uid))


def update_queue(engine: Engine, user: User | int, queue_id: int, expected_version: int, *,
                 overlap: Optional[int] = None, is_active: Optional[bool] = None,
                 members: Optional[list[int]] = None, lease_seconds: Optional[int] = None) -> Queue:
    with Session(write_engine(engine), expire_on_commit=False) as s:
        admin = require(s, user, "manage_queues")
        q = s.get(Queue, queue_id)
        if q is None:
            raise ValueError(f"queue {queue_id} does not exist")
        if q.version != expected_version:
            raise ConflictError(f"queue '{q.name}' was changed by someone else (version {q.version}, you had "
                                f"{expected_version})", current=_queue_dict(q))
        before = {**_queue_dict(q), "members": _member_ids(s, q.id)}
        if overlap is not None:
            if overlap < 1:
                raise ValueError("overlap must be at least 1")
            q.overlap = overlap
        if is_active is not None:
            q.is_active = is_active
        if lease_seconds is not None:
            q.lease_seconds = lease_seconds
        if members is not None:
            _set_members(s, q, members)
        q.version += 1
        s.flush()
        record(s, admin.id, "queue", q.id, "update", before, {**_queue_dict(q), "members": _member_ids(s, q.id)})
        s.commit()
        return q


def refresh_queue(engine: Engine, user: User | int, queue_id: int) -> int:
    """Add traces that now match the filter, and re-rank open items (auto-labels may have arrived since)."""
    with Session(write_engine(engine)) as s:
        admin = require(s, user, "manage_queues")
        q = s.get(Queue, queue_id)
        if q is None:
            raise ValueError(f"queue {queue_id} does not exist")
        added = _materialise(s, q)
        prio = (select(case((flagged_expr(), 0), else_=1)).select_from(Trace)
                .join(Prompt, Prompt.id == Trace.prompt_id).where(Trace.id == QueueItem.trace_id)
                .scalar_subquery())
        s.execute(update(QueueItem).where(QueueItem.queue_id == q.id, QueueItem.is_open.is_(True))
                  .values(priority=prio))
        record(s, admin.id, "queue", q.id, "refresh", None, {"items_added": added})
        s.commit()
    refresh_statistics(engine, ("queue_item", "trace"), added)
    return added


def _member_ids(s: Session, queue_id: int) -> list[int]:
    return sorted(s.execute(select(QueueMember.user_id).where(QueueMember.queue_id == queue_id)).scalars())


def list_queues(engine: Engine, user: User | int) -> list[dict[str, Any]]:
    """Queues the user may work (members; admins see all), with overall progress."""
    with Session(engine) as s:
        me = require(s, user, "annotate")
        q = select(Queue).order_by(Queue.name)
        if me.role != Role.ADMIN:
            q = q.where(Queue.id.in_(select(QueueMember.queue_id).where(QueueMember.user_id == me.id)))
        out = []
        for queue in s.execute(q).scalars():
            total, open_ = s.execute(select(func.count(), func.coalesce(func.sum(case((QueueItem.is_open, 1),
                                                                                        else_=0)), 0))
                                     .where(QueueItem.queue_id == queue.id)).one()
            mine = s.execute(select(func.count(Annotation.id)).where(Annotation.queue_id == queue.id,
                                                                     Annotation.annotator_id == me.id)).scalar_one()
            out.append({**_queue_dict(queue), "items": total, "open": open_, "done": total - open_,
                        "mine": mine, "description": queue.description})
        return out


def queue_progress(engine: Engine, user: User | int, queue_id: int) -> dict[str, Any]:
    """Overall and per-member progress (admins)."""
    with Session(engine) as s:
        require(s, user, "manage_queues")
        q = s.get(Queue, queue_id)
        if q is None:
            raise ValueError(f"queue {queue_id} does not exist")
        total = s.execute(select(func.count()).where(QueueItem.queue_id == q.id)).scalar_one()
        done = s.execute(select(func.count()).where(QueueItem.queue_id == q.id,
                                                    QueueItem.is_open.is_(False))).scalar_one()
        skipped = s.execute(select(func.count(func.distinct(Claim.trace_id)))
                            .join(QueueItem, and_(QueueItem.trace_id == Claim.trace_id, QueueItem.queue_id == q.id))
                            .where(Claim.queue_id == q.id, Claim.kind == "skip", QueueItem.is_open.is_(True))
                            ).scalar_one()
        by_status = dict(s.execute(select(Trace.status, func.count()).join(QueueItem, QueueItem.trace_id == Trace.id)
                                   .where(QueueItem.queue_id == q.id).group_by(Trace.status)).all())
        members = s.execute(
            select(User.id, User.username, User.role, func.count(Annotation.id))
            .join(QueueMember, QueueMember.user_id == User.id)
            .outerjoin(Annotation, and_(Annotation.annotator_id == User.id, Annotation.queue_id == q.id))
            .where(QueueMember.queue_id == q.id).group_by(User.id, User.username, User.role)
            .order_by(User.username)).all()
        # Closed items include traces whose annotators disagree: they wait for adjudication, not decided yet.
        decided = sum(by_status.get(st, 0) for st in FINAL_STATUSES)
        return {"queue": _queue_dict(q), "items": total, "done": done, "skipped": skipped, "decided": decided,
                "disputed": by_status.get(TraceStatus.NEEDS_ADJUDICATION, 0),
                "fraction": (decided / total) if total else 0.0, "by_status": by_status,
                "members": [{"user_id": m[0], "username": m[1], "role": m[2], "annotations": m[3],
                             "fraction": (m[3] / total) if total else 0.0} for m in members]}


def my_progress(engine: Engine, user: User | int, queue_id: int, *, count_open: bool = True) -> dict[str, int]:
    """One member's place in a queue: traces they decided there, open items still waiting for them (their own
    live claims included) and their skipped ones. count_open=False leaves out the one count that grows with the
    queue (the review page refreshes it less often)."""
    with Session(engine) as s:
        me, q = load_queue_for(s, user, queue_id)
        done = s.execute(select(func.count(Annotation.id)).where(Annotation.queue_id == q.id,
                                                                 Annotation.annotator_id == me.id)).scalar_one()
        skipped = s.execute(select(func.count(Claim.id)).where(Claim.user_id == me.id, Claim.queue_id == q.id,
                                                               Claim.kind == "skip")).scalar_one()
        open_ = None
        if count_open:
            mine = exists().where(Annotation.trace_id == QueueItem.trace_id, Annotation.annotator_id == me.id)
            open_ = s.execute(select(func.count()).where(QueueItem.queue_id == q.id, QueueItem.is_open.is_(True),
                                                         ~mine)).scalar_one()
        return {"done": done, "open": open_, "skipped": skipped}


# -- claiming -------------------------------------------------------------------------------------------------


def queue_id_by_name(engine: Engine, user: User | int | None, name: str) -> Optional[int]:
    """A queue's id from its name, for those who train on its traces (None: the local operator)."""
    check(engine, user, "train")
    with Session(engine) as s:
        return s.execute(select(Queue.id).where(Queue.name == name)).scalar()


def all_queue_names(engine: Engine, user: User | int) -> dict[int, str]:
    """Every queue, for reviewers and admins looking at agreement."""
    with Session(engine) as s:
        require(s, user, "agreement")
        return dict(s.execute(select(Queue.id, Queue.name).order_by(Queue.name)).all())


def my_queue_names(engine: Engine, user: User | int) -> dict[int, str]:
    """The active queues the user may work, by id (cheap: no counts; the review page asks on every keypress)."""
    with Session(engine) as s:
        me = require(s, user, "annotate")
        q = select(Queue.id, Queue.name).where(Queue.is_active.is_(True)).order_by(Queue.name)
        if me.role != Role.ADMIN:
            q = q.where(Queue.id.in_(select(QueueMember.queue_id).where(QueueMember.user_id == me.id)))
        return dict(s.execute(q).all())
