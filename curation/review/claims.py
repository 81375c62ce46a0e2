"""Claiming queue items, concurrency-safe.

PostgreSQL locks candidate trace rows with SELECT ... FOR UPDATE SKIP LOCKED and re-counts annotations + live
claims in a fresh statement once it holds the lock (READ COMMITTED gives each statement a new snapshot, so it sees
every claim committed by whoever held that lock before). SQLite runs the whole claim in a BEGIN IMMEDIATE
transaction (write_engine), which serialises writers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import ConflictError, PermissionDenied
from core.vocabulary import OPEN_STATUSES, Role
from curation.auth import require
from curation.review.reading import load_item
from db.engine import write_engine
from db.models import Annotation, Claim, Queue, QueueItem, QueueMember, Trace, User, utcnow


@dataclass
class ClaimResult:
    trace_id: int
    trace_version: int
    queue_id: int
    expires_at: datetime


def check_member(s: Session, me: User, queue: Queue) -> None:
    if me.role == Role.ADMIN:
        return
    if not s.execute(select(QueueMember.user_id).where(QueueMember.queue_id == queue.id,
                                                       QueueMember.user_id == me.id)).first():
        raise PermissionDenied(f"'{me.username}' is not a member of queue '{queue.name}'")


def load_queue_for(s: Session, user: User | int, queue_id: int) -> tuple[User, Queue]:
    me = require(s, user, "annotate")
    queue = s.get(Queue, queue_id)
    if queue is None:
        raise ValueError(f"queue {queue_id} does not exist")
    check_member(s, me, queue)
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
                return _skipped_back(s, me, queue, now, expires, keep)
            return _take(s, me, queue, row[0], row[1], now, expires)
        for _attempt in range(1000):
            for trace_id, version in s.execute(cand.with_for_update(skip_locked=True, of=Trace)).all():
                if _full_or_mine(s, trace_id, me.id, queue.overlap, now):
                    continue  # whoever held the lock before us filled it (this statement sees their commit)
                return _take(s, me, queue, trace_id, version, now, expires)
            # Everything unlocked was full. Rows others hold locked may still have room once they commit:
            # look again (without locks, fresh snapshot) and retry while anything is eligible.
            if s.execute(cand.limit(1)).first() is None:
                return _skipped_back(s, me, queue, now, expires, keep)
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


def _skipped_back(s: Session, me: User, queue: Queue, now: datetime, expires: datetime,
                  keep: tuple[int, ...]) -> Optional[ClaimResult]:
    """Nothing new is left for the user: their own skips in this queue come back, oldest first, as long as the
    trace still has room (Label Studio and Argilla's discarded filter do the same). Not while the page still shows
    a trace (`keep`): a skip returns after the last new trace is done, not as the prefetched next one."""
    if keep:
        s.rollback()
        return None
    skipped = s.execute(select(Claim.trace_id, Trace.version).join(Trace, Trace.id == Claim.trace_id)
                        .where(Claim.user_id == me.id, Claim.queue_id == queue.id, Claim.kind == "skip",
                               Trace.status.in_(OPEN_STATUSES))
                        .order_by(Claim.claimed_at, Claim.id)).all()
    for trace_id, version in skipped:
        if live_load(s, trace_id, now) < queue.overlap:
            return _take(s, me, queue, trace_id, version, now, expires)
    s.rollback()
    return None


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
    """Give the trace back to others; it comes back to this user once nothing new is left for them (or after
    `hide_seconds`)."""
    now = now or utcnow()
    with Session(write_engine(engine)) as s:
        me = require(s, user, "annotate")
        c = s.execute(select(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id)).scalars().first()
        if c is None:
            raise ValueError(f"you hold no claim on trace {trace_id}")
        c.kind, c.claimed_at, c.expires_at = "skip", now, now + timedelta(seconds=hide_seconds)
        s.commit()


def unskip(engine: Engine, user: User | int, trace_id: int, *, now: Optional[datetime] = None) -> None:
    """Undo a skip: the trace is the user's claim again, if others have not filled it meanwhile."""
    now = now or utcnow()
    with Session(write_engine(engine)) as s:
        me = require(s, user, "annotate")
        c = s.execute(select(Claim).where(Claim.trace_id == trace_id, Claim.user_id == me.id,
                                          Claim.kind == "skip")).scalars().first()
        if c is None:
            raise ValueError(f"you have not skipped trace {trace_id}")
        queue = s.get(Queue, c.queue_id)
        check_member(s, me, queue)
        if live_load(s, trace_id, now) >= queue.overlap:
            raise ConflictError(f"trace {trace_id} was taken by others since you skipped it")
        c.kind, c.claimed_at, c.expires_at = "active", now, now + timedelta(seconds=queue.lease_seconds)
        s.commit()


def next_item(engine: Engine, user: User | int, queue_id: int, *, keep: tuple[int, ...] = ()) -> Optional[dict]:
    """Claim the user's next trace in a queue (see claim_next) and load what the review page shows for it."""
    c = claim_next(engine, user, queue_id, keep=keep)
    return None if c is None else load_item(engine, user, c.trace_id)
