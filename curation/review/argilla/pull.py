"""Pulling Argilla responses back: submitted responses become Annotation rows (source "argilla") through
curation.review.annotations.submit_annotation, so overlap, consensus and audit rules apply exactly as for UI
annotations. Discards are recorded as skips, drafts are left for a later pull, and every handled response gets an
ArgillaResponse row (pulls are idempotent). A trace whose version moved after the push for any reason other than an
annotation starting its review is flagged as a conflict and its responses are not applied."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import ConflictError, PermissionDenied
from core.vocabulary import Role
from curation.auth import ARGILLA_PREFIX, require, user_dict
from curation.review.annotations import submit_annotation
from curation.review.argilla.connection import ArgillaConnection, ArgillaError, client, find, require_conn, scrub
from curation.review.argilla.mapping import annotation_from_response, conflict_reason, trace_id_of
from curation.review.audit import record
from curation.review.queues import update_queue
from db.engine import write_engine
from db.models import (
    Annotation,
    ArgillaDataset,
    ArgillaRecord,
    ArgillaResponse,
    AuditEvent,
    Queue,
    QueueMember,
    Trace,
    User,
    utcnow,
)

Progress = Callable[[int, Optional[int], str], None]
NO_PASSWORD = "!argilla-user-no-password"  # not an argon2 hash: never verifies, so no login until an admin sets one


@dataclass
class _PullStats:
    annotated: int = 0
    skipped: int = 0
    conflicts: int = 0
    invalid: int = 0
    unchanged: int = 0
    drafts: int = 0
    users_created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _local_user(engine: Engine, actor_id: int, username: str, stats: _PullStats) -> User:
    """The local account linked to an Argilla username (`User.argilla_username`, set by an admin). Never matched
    by name: an Argilla user called "admin" must not act as the local admin. Without a link, an annotator account
    "argilla:<name>" is created, linked, and without a usable password. One IMMEDIATE transaction with its audit
    event: curation.auth.create_user hashes inside a deferred SQLite read, which concurrent writers (the worker's
    heartbeat) turn into "database is locked"."""
    with Session(write_engine(engine), expire_on_commit=False) as s:
        u = s.execute(select(User).where(User.argilla_username == username)).scalars().first()
        if u is not None:
            return u
        require(s, actor_id, "manage_users")
        u = User(username=f"{ARGILLA_PREFIX}{username}"[:100], password_hash=NO_PASSWORD, role=Role.ANNOTATOR,
                 argilla_username=username)
        s.add(u)
        s.flush()
        record(s, actor_id, "user", u.id, "create", None, {**user_dict(u), "via": "argilla"})
        s.commit()
    stats.users_created.append(u.username)
    return u


def _ensure_member(engine: Engine, actor_id: int, queue_id: Optional[int], user_id: int) -> Optional[int]:
    """Argilla annotators of a queue's dataset work that queue: add them as members. None if the queue is gone."""
    if queue_id is None:
        return None
    with Session(engine) as s:
        q = s.get(Queue, queue_id)
        if q is None:
            return None
        members = list(s.execute(select(QueueMember.user_id).where(QueueMember.queue_id == q.id)).scalars())
        version = q.version
    if user_id not in members:
        update_queue(engine, actor_id, queue_id, version, members=members + [user_id])
    return queue_id


def _record_outcome(engine: Engine, d: ArgillaDataset, trace_id: int, resp: dict, user_id: Optional[int],
                    outcome: str, detail: str = "", annotation_id: Optional[int] = None,
                    synced_version: Optional[int] = None, conflict: Optional[str] = None) -> None:
    now = utcnow()
    with Session(write_engine(engine)) as s:
        s.add(ArgillaResponse(dataset_id=d.id, trace_id=trace_id, argilla_user_id=resp["user_id"],
                              argilla_username=resp["username"], user_id=user_id, status=resp["status"],
                              outcome=outcome, annotation_id=annotation_id, detail=detail[:2000], pulled_at=now))
        rec = s.execute(select(ArgillaRecord).where(ArgillaRecord.dataset_id == d.id,
                                                    ArgillaRecord.trace_id == trace_id)).scalars().first()
        if rec is not None and synced_version is not None:
            rec.synced_version, rec.synced_at = synced_version, now
        if rec is not None and conflict:
            rec.conflict = conflict
        s.commit()


def _check_conflict(engine: Engine, d: ArgillaDataset, trace_id: int, seen: Optional[int]) -> tuple[Optional[str], int]:
    with Session(engine) as s:
        t = s.get(Trace, trace_id)
        if t is None:
            return f"trace {trace_id} no longer exists", 0
        rec = s.execute(select(ArgillaRecord).where(ArgillaRecord.dataset_id == d.id,
                                                    ArgillaRecord.trace_id == trace_id)).scalars().first()
        if rec is None:
            return f"trace {trace_id} was not pushed to this dataset from here", t.version
        if rec.conflict:
            return rec.conflict, t.version
        seen = seen if seen is not None else rec.pushed_version
        baseline, since = (rec.synced_version, rec.synced_at) if seen == rec.pushed_version else (seen, rec.pushed_at)
        events = list(s.execute(select(AuditEvent.action).where(
            AuditEvent.entity == "trace", AuditEvent.entity_id == trace_id, AuditEvent.at >= since)
            .order_by(AuditEvent.id)).scalars())
        return conflict_reason(t.version, baseline, events), seen


def _apply_response(engine: Engine, actor_id: int, d: ArgillaDataset, trace_id: int, resp: dict,
                    seen: Optional[int], stats: _PullStats) -> None:
    user = _local_user(engine, actor_id, resp["username"], stats)
    if resp["status"] == "discarded":
        _record_outcome(engine, d, trace_id, resp, user.id, "skipped", "discarded in Argilla")
        stats.skipped += 1
        return
    reason, seen_version = _check_conflict(engine, d, trace_id, seen)
    if reason:
        _record_outcome(engine, d, trace_id, resp, user.id, "conflict", reason, conflict=reason)
        stats.conflicts += 1
        return
    with Session(engine) as s:
        t = s.get(Trace, trace_id)
        reasoning, response = t.reasoning, t.response
        done = s.execute(select(Annotation.id).where(Annotation.trace_id == trace_id,
                                                     Annotation.annotator_id == user.id,
                                                     Annotation.source == "argilla")).scalar()
    if done is not None:  # an earlier pull saved it but died before recording the response
        _record_outcome(engine, d, trace_id, resp, user.id, "annotated", "recovered", annotation_id=done)
        stats.annotated += 1
        return
    kwargs = annotation_from_response(resp["values"], reasoning, response)
    try:
        queue_id = _ensure_member(engine, actor_id, d.queue_id, user.id)
        res = submit_annotation(engine, user.id, trace_id, trace_version=seen_version, queue_id=queue_id,
                                source="argilla", authority=actor_id, **kwargs)
    except ConflictError as e:
        _record_outcome(engine, d, trace_id, resp, user.id, "conflict", str(e))
        stats.conflicts += 1
        return
    except (ValueError, TypeError, PermissionDenied) as e:
        _record_outcome(engine, d, trace_id, resp, user.id, "invalid", f"{type(e).__name__}: {e}")
        stats.invalid += 1
        return
    _record_outcome(engine, d, trace_id, resp, user.id, "annotated", annotation_id=res.annotation_id,
                    synced_version=res.trace_version)
    stats.annotated += 1


def _remote_records(api, dataset_id, limit: int = 100):
    """Raw record models (not rg.Record: the SDK's Record cannot hold a response whose values are null)."""
    offset = 0
    while True:
        page = api.api.records.list(dataset_id=dataset_id, offset=offset, limit=limit, with_suggestions=False,
                                       with_responses=True)
        yield from page
        if len(page) < limit:
            return
        offset += len(page)


def pull(engine: Engine, actor: User | int, *, dataset: Optional[str] = None,
         conn: Optional[ArgillaConnection] = None, progress: Optional[Progress] = None) -> dict[str, Any]:
    """Pull submitted and discarded responses of one pushed dataset (or all of them) into annotations."""
    conn = require_conn(conn)
    with Session(engine, expire_on_commit=False) as s:
        me = require(s, actor, "manage_queues")
        q = select(ArgillaDataset).where(ArgillaDataset.workspace == conn.workspace).order_by(ArgillaDataset.id)
        if dataset:
            q = q.where(ArgillaDataset.name == dataset)
        datasets = list(s.execute(q).scalars())
        handled = set(s.execute(select(ArgillaResponse.dataset_id, ArgillaResponse.trace_id,
                                       ArgillaResponse.argilla_user_id)
                                .where(ArgillaResponse.dataset_id.in_([d.id for d in datasets]))).tuples())
    if dataset and not datasets:
        raise ValueError(f"dataset '{dataset}' was never pushed to workspace '{conn.workspace}' from here")
    stats = _PullStats()
    total = sum(d.record_count for d in datasets)
    done = 0
    try:
        api = client(conn)
        names = {str(u.id): u.username for u in api.api.users.list()}
        for d in datasets:
            ds = find(api.datasets, name=d.name, workspace=d.workspace)
            if ds is None:
                raise ArgillaError(f"dataset '{d.name}' is gone from workspace '{d.workspace}' on {conn.url}")
            for rec in _remote_records(api, ds.id):
                trace_id = trace_id_of(rec.external_id)
                meta = rec.metadata if isinstance(rec.metadata, dict) else {}
                for r in rec.responses or []:
                    status_ = str(getattr(r.status, "value", r.status))
                    if status_ == "draft":
                        stats.drafts += 1
                        continue
                    key = (d.id, trace_id, str(r.user_id))
                    if trace_id is None or key in handled:
                        stats.unchanged += 1
                        continue
                    resp = {"user_id": str(r.user_id), "username": names.get(str(r.user_id), str(r.user_id)),
                            "status": status_, "values": r.values or {}}
                    _apply_response(engine, me.id, d, trace_id, resp, meta.get("trace_version"), stats)
                    handled.add(key)
                done += 1
                if progress:
                    progress(done, total, f"{d.name}: {done} of {total} records")
            with Session(write_engine(engine)) as s:
                s.get(ArgillaDataset, d.id).pulled_at = utcnow()
                s.commit()
    except (ValueError, PermissionDenied, ArgillaError):
        raise
    except Exception as e:
        raise ArgillaError(scrub(conn, f"pull from {conn.url} failed: {type(e).__name__}: {e}")[:1000]) from None
    return {"datasets": [d.name for d in datasets], **stats.as_dict()}


