"""Review queues: a trace filter materialised into queue items, members, progress, and concurrency-safe claiming.

Claiming: PostgreSQL locks candidate trace rows with SELECT ... FOR UPDATE SKIP LOCKED and re-counts
annotations + live claims in a fresh statement once it holds the lock (READ COMMITTED gives each statement a
new snapshot, so it sees every claim committed by whoever held that lock before). SQLite runs the whole claim
in a BEGIN IMMEDIATE transaction (write_engine), which serialises writers.
"""
from __future__ import annotations

import time

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import and_, case, delete, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.audit import record
from curation.auth import ADMIN, PermissionDenied, require
from db.engine import write_engine
from db.models import (BEHAVIORS, TRACE_STATUSES, Annotation, AutoLabel, Claim, Prompt, PromptSet, Queue,
                       QueueItem, QueueMember, Trace, User, utcnow)

OPEN_STATUSES = ("pending", "in_review")
REFUSE_LABELS = ("refuse", "refusal", "refused")
COMPLY_LABELS = ("comply", "complied", "compliance")
INCONSISTENT_LABELS = ("inconsistent", "no", "false", "mismatch", "0")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class TraceFilter:
    """A server-side filter over traces (queues, browse, bulk actions). Empty fields do not filter."""

    set_names: list[str] = field(default_factory=list)
    behaviors: list[str] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)  # "(none)" selects un-mutated prompts
    statuses: list[str] = field(default_factory=list)
    auto_labels: list[str] = field(default_factory=list)  # "kind=label"
    flagged_only: bool = False  # auto-labels disagree with the expected behaviour or are inconsistent
    annotator_ids: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    search: str = ""

    @classmethod
    def from_dict(cls, d: Optional[dict[str, Any]]) -> "TraceFilter":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"filter: unknown field(s) {unknown}; known: {sorted(known)}")
        flt = cls(**d)
        flt.validate()
        return flt

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ([], "", False)}

    def validate(self) -> None:
        for b in self.behaviors:
            if b not in BEHAVIORS:
                raise ValueError(f"filter field 'behaviors': '{b}' is not one of {', '.join(BEHAVIORS)}")
        for st in self.statuses:
            if st not in TRACE_STATUSES:
                raise ValueError(f"filter field 'statuses': '{st}' is not one of {', '.join(TRACE_STATUSES)}")
        for al in self.auto_labels:
            if "=" not in al:
                raise ValueError(f"filter field 'auto_labels': '{al}' must look like kind=label")

    def apply(self, q):
        """q selects from Trace joined to Prompt."""
        if self.set_names:
            q = q.where(Prompt.set_id.in_(select(PromptSet.id).where(PromptSet.name.in_(self.set_names))))
        if self.behaviors:
            q = q.where(Prompt.expected_behavior.in_(self.behaviors))
        if self.mutations:
            named = [m for m in self.mutations if m != "(none)"]
            conds = [Prompt.mutation.in_(named)] if named else []
            if "(none)" in self.mutations:
                conds.append(Prompt.mutation.is_(None))
            q = q.where(or_(*conds))
        if self.statuses:
            q = q.where(Trace.status.in_(self.statuses))
        for al in self.auto_labels:
            kind, label = (p.strip() for p in al.split("=", 1))
            q = q.where(exists().where(AutoLabel.trace_id == Trace.id, AutoLabel.kind == kind,
                                       AutoLabel.label == label))
        if self.flagged_only:
            q = q.where(flagged_expr())
        if self.annotator_ids:
            q = q.where(exists().where(Annotation.trace_id == Trace.id,
                                       Annotation.annotator_id.in_(self.annotator_ids)))
        if self.run_ids:
            q = q.where(Trace.run_id.in_(self.run_ids))
        if self.search.strip():
            pat = _like(self.search.strip())
            q = q.where(or_(Prompt.text.ilike(pat, escape="\\"), Trace.reasoning.ilike(pat, escape="\\"),
                            Trace.response.ilike(pat, escape="\\")))
        return q


def flagged_expr():
    """True where an auto-label contradicts the prompt's expected behaviour or marks the trace inconsistent."""
    lab = func.lower(AutoLabel.label)
    return exists().where(AutoLabel.trace_id == Trace.id, or_(
        and_(AutoLabel.kind.in_(("consistency", "matches_expected")), lab.in_(INCONSISTENT_LABELS)),
        and_(AutoLabel.kind.in_(("refusal", "decision", "judge")), or_(
            and_(lab.in_(REFUSE_LABELS), Prompt.expected_behavior != "refuse"),
            and_(lab.in_(COMPLY_LABELS), Prompt.expected_behavior != "comply")))))


# -- queue administration -----------------------------------------------------------------------------------
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


def _analyze_if_big(s: Session, added: int) -> None:
    """After a big materialisation, refresh PostgreSQL's statistics so claiming plans from real numbers."""
    if added >= 1000 and s.get_bind().dialect.name == "postgresql":
        s.execute(text("ANALYZE queue_item"))
        s.execute(text("ANALYZE trace"))


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
        _analyze_if_big(s, added)
        _set_members(s, q, list(members))
        record(s, admin.id, "queue", q.id, "create", None, {**_queue_dict(q), "items_added": added,
                                                              "members": sorted(members)})
        s.commit()
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
    from curation.review import ConflictError

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
        _analyze_if_big(s, added)
        prio = (select(case((flagged_expr(), 0), else_=1)).select_from(Trace)
                .join(Prompt, Prompt.id == Trace.prompt_id).where(Trace.id == QueueItem.trace_id)
                .scalar_subquery())
        s.execute(update(QueueItem).where(QueueItem.queue_id == q.id, QueueItem.is_open.is_(True))
                  .values(priority=prio))
        record(s, admin.id, "queue", q.id, "refresh", None, {"items_added": added})
        s.commit()
        return added


def _member_ids(s: Session, queue_id: int) -> list[int]:
    return sorted(s.execute(select(QueueMember.user_id).where(QueueMember.queue_id == queue_id)).scalars())


def list_queues(engine: Engine, user: User | int) -> list[dict[str, Any]]:
    """Queues the user may work (members; admins see all), with overall progress."""
    with Session(engine) as s:
        me = require(s, user, "annotate")
        q = select(Queue).order_by(Queue.name)
        if me.role != ADMIN:
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
        by_status = dict(s.execute(select(Trace.status, func.count()).join(QueueItem, QueueItem.trace_id == Trace.id)
                                   .where(QueueItem.queue_id == q.id).group_by(Trace.status)).all())
        members = s.execute(
            select(User.id, User.username, User.role, func.count(Annotation.id))
            .join(QueueMember, QueueMember.user_id == User.id)
            .outerjoin(Annotation, and_(Annotation.annotator_id == User.id, Annotation.queue_id == q.id))
            .where(QueueMember.queue_id == q.id).group_by(User.id, User.username, User.role)
            .order_by(User.username)).all()
        return {"queue": _queue_dict(q), "items": total, "done": done,
                "fraction": (done / total) if total else 0.0, "by_status": by_status,
                "members": [{"user_id": m[0], "username": m[1], "role": m[2], "annotations": m[3],
                             "fraction": (m[3] / total) if total else 0.0} for m in members]}


# -- claiming -------------------------------------------------------------------------------------------------
@dataclass
class ClaimResult:
    trace_id: int
    trace_version: int
    queue_id: int
    expires_at: datetime


def _check_member(s: Session, me: User, queue: Queue) -> None:
    if me.role == ADMIN:
        return
    if not s.execute(select(QueueMember.user_id).where(QueueMember.queue_id == queue.id,
                                                       QueueMember.user_id == me.id)).first():
        raise PermissionDenied(f"'{me.username}' is not a member of queue '{queue.name}'")


def load_queue_for(s: Session, user: User | int, queue_id: int) -> tuple[User, Queue]:
    me = require(s, user, "annotate")
    queue = s.get(Queue, queue_id)
    if queue is None:
        raise ValueError(f"queue {queue_id} does not exist")
    _check_member(s, me, queue)
    return me, queue


def live_load(s: Session, trace_id: int, now: datetime, *, except_user: Optional[int] = None) -> int:
    """Annotations plus live active claims on a trace (the number the overlap caps)."""
    n_ann = s.execute(select(func.count(Annotation.id)).where(Annotation.trace_id == trace_id)).scalar_one()
    cq = select(func.count(Claim.id)).where(Claim.trace_id == trace_id, Claim.kind == "active",
                                            Claim.expires_at > now)
    if except_user is not None:
        cq = cq.where(Claim.user_id != except_user)
    return n_ann + s.execute(cq).scalar_one()


def claim_next(engine: Engine, user: User | int, queue_id: int, *, keep: tuple[int, ...] = (),
               now: Optional[datetime] = None) -> Optional[ClaimResult]:
    """Claim the next trace for the user, or return a live claim they already hold (other than `keep`,
    the traces the page is already showing). None when the queue has nothing left for them."""
    now = now or utcnow()
    pg = engine.dialect.name == "postgresql"
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me, queue = load_queue_for(s, user, queue_id)
        if not queue.is_active:
            raise PermissionDenied(f"queue '{queue.name}' is paused")
        expires = now + timedelta(seconds=queue.lease_seconds)
        held = s.execute(
            select(Claim).join(Trace, Trace.id == Claim.trace_id)
            .where(Claim.user_id == me.id, Claim.queue_id == queue.id, Claim.kind == "active",
                   Claim.expires_at > now, Trace.status.in_(OPEN_STATUSES), Claim.trace_id.notin_(keep or (-1,)))
            .order_by(Claim.claimed_at, Claim.id).limit(1)).scalars().first()
        if held is not None:
            held.expires_at = expires
            version = s.get(Trace, held.trace_id).version
            s.commit()
            return ClaimResult(held.trace_id, version, queue.id, expires)

        mine_ann = exists().where(Annotation.trace_id == QueueItem.trace_id, Annotation.annotator_id == me.id)
        mine_claim = exists().where(Claim.trace_id == QueueItem.trace_id, Claim.user_id == me.id,
                                    Claim.expires_at > now)
        n_ann = (select(func.count(Annotation.id)).where(Annotation.trace_id == QueueItem.trace_id)
                 .scalar_subquery())
        n_claim = (select(func.count(Claim.id)).where(Claim.trace_id == QueueItem.trace_id, Claim.kind == "active",
                                                      Claim.expires_at > now).scalar_subquery())
        # Walk the queue's claim index in priority order and stop at the first few open items (the inner
        # query), then join the traces: the plan stays "first rows" even where statistics are stale.
        head = (select(QueueItem.trace_id, QueueItem.priority)
                .where(QueueItem.queue_id == queue.id, QueueItem.is_open.is_(True), ~mine_ann, ~mine_claim,
                       n_ann + n_claim < queue.overlap)
                .order_by(QueueItem.priority, QueueItem.trace_id).limit(16).subquery())
        cand = (select(Trace.id, Trace.version).join(head, head.c.trace_id == Trace.id)
                .where(Trace.status.in_(OPEN_STATUSES)).order_by(head.c.priority, head.c.trace_id))
        if not pg:  # BEGIN IMMEDIATE: nobody else writes until we commit, so the first candidate is ours
            row = s.execute(cand.limit(1)).first()
            if row is None:
                s.rollback()
                return None
            return _take(s, me, queue, row[0], row[1], now, expires)
        for _attempt in range(1000):
            for trace_id, version in s.execute(cand.with_for_update(skip_locked=True, of=Trace)).all():
                if _full_or_mine(s, trace_id, me.id, queue.overlap, now):
                    continue  # whoever held the lock before us filled it (this statement sees their commit)
                return _take(s, me, queue, trace_id, version, now, expires)
            # Everything unlocked was full. Rows others hold locked may still have room once they commit:
            # look again (without locks, fresh snapshot) and retry while anything is eligible.
            if s.execute(cand.limit(1)).first() is None:
                s.rollback()
                return None
            s.rollback()
            time.sleep(0.002 * (1 + _attempt % 10))  # let the lock holders commit
            me, queue = load_queue_for(s, user, queue_id)
        raise RuntimeError(f"could not claim from queue {queue_id}: too much contention")


def _take(s: Session, me: User, queue: Queue, trace_id: int, version: int, now: datetime,
          expires: datetime) -> ClaimResult:
    old = s.execute(select(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id)).scalars().first()
    if old is not None:  # an expired lease or skip of ours: reuse the row (unique trace+user)
        old.kind, old.queue_id, old.claimed_at, old.expires_at = "active", queue.id, now, expires
    else:
        s.add(Claim(trace_id=trace_id, user_id=me.id, queue_id=queue.id, claimed_at=now, expires_at=expires))
    s.commit()
    return ClaimResult(trace_id, version, queue.id, expires)


def _full_or_mine(s: Session, trace_id: int, user_id: int, overlap: int, now: datetime) -> bool:
    """One fresh statement: is the trace at its overlap, or already annotated/claimed by this user?"""
    n_ann = select(func.count(Annotation.id)).where(Annotation.trace_id == trace_id).scalar_subquery()
    n_claim = select(func.count(Claim.id)).where(Claim.trace_id == trace_id, Claim.kind == "active",
                                                 Claim.expires_at > now).scalar_subquery()
    mine_ann = exists().where(Annotation.trace_id == trace_id, Annotation.annotator_id == user_id)
    mine_claim = exists().where(Claim.trace_id == trace_id, Claim.user_id == user_id, Claim.expires_at > now)
    full, mine = s.execute(select(n_ann + n_claim >= overlap, or_(mine_ann, mine_claim))).one()
    return bool(full or mine)


def release(engine: Engine, user: User | int, trace_id: int) -> None:
    """Give a claimed trace back at once (leaving the page)."""
    with Session(write_engine(engine)) as s:
        me = require(s, user, "annotate")
        s.execute(delete(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id, Claim.kind == "active"))
        s.commit()


def skip(engine: Engine, user: User | int, trace_id: int, *, hide_seconds: int = 8 * 3600,
         now: Optional[datetime] = None) -> None:
    """Give the trace back to others, and keep it away from this user for a while."""
    now = now or utcnow()
    with Session(write_engine(engine)) as s:
        me = require(s, user, "annotate")
        c = s.execute(select(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id)).scalars().first()
        if c is None:
            raise ValueError(f"you hold no claim on trace {trace_id}")
        c.kind, c.claimed_at, c.expires_at = "skip", now, now + timedelta(seconds=hide_seconds)
        s.commit()


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
        if me.role != ADMIN:
            q = q.where(Queue.id.in_(select(QueueMember.queue_id).where(QueueMember.user_id == me.id)))
        return dict(s.execute(q).all())
