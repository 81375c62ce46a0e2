"""Pushing traces to Argilla (a queue's open traces, or a filter's) and the overview of pushed datasets.
Re-pushing upserts by record id, so nothing is duplicated. Auto-labels become suggestions; the model's texts
pre-fill the `corrected_*` text questions, which is how Argilla users edit model output."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import PermissionDenied
from curation.auth import require
from curation.review.argilla.connection import (
    ArgillaConnection,
    ArgillaError,
    client,
    connection_settings,
    failure_line,
    find,
    require_conn,
    scrub,
)
from curation.review.argilla.mapping import OTHER_HARM, dataset_settings, record_spec, to_record
from db.engine import write_engine
from db.filters import TraceFilter
from db.models import (
    ArgillaDataset,
    ArgillaRecord,
    ArgillaResponse,
    AuditEvent,
    AutoLabel,
    Prompt,
    PromptSet,
    Queue,
    QueueItem,
    Trace,
    User,
    utcnow,
)

Progress = Callable[[int, Optional[int], str], None]
BATCH = 50


def _harm_labels(s: Session) -> list[str]:
    cats = sorted({c for c in s.execute(select(Prompt.category).where(Prompt.category.is_not(None))
                                        .distinct()).scalars() if c})
    return cats + [OTHER_HARM] if OTHER_HARM not in cats else cats


def _selection(s: Session, queue: Optional[str], flt: Optional[dict]) -> tuple[Optional[Queue], list[int]]:
    if (queue is None) == (flt is None):
        raise ValueError("give exactly one of a queue name or a filter")
    if queue is not None:
        q = s.execute(select(Queue).where(Queue.name == queue)).scalars().first()
        if q is None:
            raise ValueError(f"queue '{queue}' does not exist")
        ids = s.execute(select(QueueItem.trace_id).where(QueueItem.queue_id == q.id, QueueItem.is_open.is_(True))
                        .order_by(QueueItem.trace_id)).scalars().all()
        return q, list(ids)
    tf = TraceFilter.from_dict(flt)
    ids = s.execute(tf.apply(select(Trace.id).join(Prompt, Prompt.id == Trace.prompt_id)).order_by(Trace.id)
                    ).scalars().all()
    return None, list(ids)


def _trace_rows(s: Session, ids: list[int]) -> list[dict]:
    rows = s.execute(select(Trace, Prompt, PromptSet.name).join(Prompt, Prompt.id == Trace.prompt_id)
                     .join(PromptSet, PromptSet.id == Prompt.set_id).where(Trace.id.in_(ids))).all()
    return [{"id": t.id, "version": t.version, "prompt": p.text, "reasoning": t.reasoning, "response": t.response,
             "model": t.model, "set_name": name, "expected_behavior": p.expected_behavior, "mutation": p.mutation}
            for t, p, name in rows]


def _labels_by_trace(s: Session, ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for al in s.execute(select(AutoLabel).where(AutoLabel.trace_id.in_(ids))).scalars():
        out.setdefault(al.trace_id, []).append({"kind": al.kind, "agent": al.agent, "label": al.label,
                                                "score": al.score})
    return out


def push(engine: Engine, actor: User | int, *, queue: Optional[str] = None, flt: Optional[dict] = None,
         dataset: Optional[str] = None, overlap: Optional[int] = None, conn: Optional[ArgillaConnection] = None,
         progress: Optional[Progress] = None) -> dict[str, Any]:
    """Push a queue's open traces (or a filter's traces) to an Argilla dataset; returns counts."""
    conn = require_conn(conn)
    with Session(engine) as s:
        me = require(s, actor, "manage_queues")
        q, ids = _selection(s, queue, flt)
        name = (dataset or (q.name if q else "")).strip()
        if not name:
            raise ValueError("a dataset name is needed when pushing a filter")
        overlap = overlap or (q.overlap if q else 1)
        harm_labels = _harm_labels(s)
    import argilla as rg

    try:
        api = client(conn)
        if find(api.workspaces, name=conn.workspace) is None:
            rg.Workspace(name=conn.workspace, client=api).create()
        ds = find(api.datasets, name=name, workspace=conn.workspace)
        if ds is None:
            ds = rg.Dataset(name=name, workspace=conn.workspace, settings=dataset_settings(rg, harm_labels, overlap),
                            client=api).create()
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            with Session(engine) as s:
                traces, labels = _trace_rows(s, chunk), _labels_by_trace(s, chunk)
            specs = [record_spec(t, labels.get(t["id"], []), harm_labels) for t in traces]
            ds.records.log([to_record(rg, sp) for sp in specs], batch_size=BATCH)
            _save_pushed(engine, me.id, name, conn.workspace, str(ds.id), q, flt, overlap, traces)
            if progress:
                progress(start + len(chunk), len(ids), f"pushed {start + len(chunk)} of {len(ids)} traces")
    except (ValueError, PermissionDenied):
        raise
    except Exception as e:
        raise ArgillaError(scrub(conn, f"push to {conn.url} failed: {type(e).__name__}: {e}")[:1000]) from None
    if not ids:
        _save_pushed(engine, me.id, name, conn.workspace, str(ds.id), q, flt, overlap, [])
    return {"dataset": name, "workspace": conn.workspace, "pushed": len(ids), "overlap": overlap}


def _save_pushed(engine: Engine, actor_id: int, name: str, workspace: str, argilla_id: str, q: Optional[Queue],
                 flt: Optional[dict], overlap: int, traces: list[dict]) -> None:
    now = utcnow()
    with Session(write_engine(engine)) as s:
        d = s.execute(select(ArgillaDataset).where(ArgillaDataset.workspace == workspace,
                                                   ArgillaDataset.name == name)).scalars().first()
        if d is None:
            d = ArgillaDataset(name=name, workspace=workspace, created_by=actor_id,
                               queue_id=q.id if q else None, queue_name=q.name if q else None,
                               filter=(q.filter if q else flt) or {})
            s.add(d)
        d.argilla_id, d.overlap, d.pushed_at = argilla_id, overlap, now
        s.flush()
        existing = {r.trace_id: r for r in s.execute(select(ArgillaRecord).where(
            ArgillaRecord.dataset_id == d.id, ArgillaRecord.trace_id.in_([t["id"] for t in traces]))).scalars()}
        for t in traces:
            r = existing.get(t["id"])
            if r is None:
                s.add(ArgillaRecord(dataset_id=d.id, trace_id=t["id"], pushed_version=t["version"],
                                    synced_version=t["version"], synced_at=now, pushed_at=now))
            else:  # the re-pushed record shows this version now
                r.pushed_version = r.synced_version = t["version"]
                r.synced_at = r.pushed_at = now
                r.conflict = None
        s.flush()
        d.record_count = s.execute(select(func.count()).where(ArgillaRecord.dataset_id == d.id)).scalar_one()
        s.add(AuditEvent(actor_id=actor_id, entity="argilla_dataset", entity_id=d.id, action="push",
                         after={"traces": len(traces), "overlap": overlap}))
        s.commit()




# -- overview for the page ----------------------------------------------------------------------------------------
def list_datasets(engine: Engine, *, conn: Optional[ArgillaConnection] = None,
                  with_progress: bool = True) -> list[dict[str, Any]]:
    """Pushed datasets with local counts and, when the server answers, Argilla's own progress."""
    with Session(engine) as s:
        rows = list(s.execute(select(ArgillaDataset).order_by(ArgillaDataset.id.desc())).scalars())
        outcomes: dict[int, dict[str, int]] = {}
        for ds_id, outcome, n in s.execute(select(ArgillaResponse.dataset_id, ArgillaResponse.outcome, func.count())
                                           .group_by(ArgillaResponse.dataset_id, ArgillaResponse.outcome)):
            outcomes.setdefault(ds_id, {})[outcome] = n
        conflicts = dict(s.execute(select(ArgillaRecord.dataset_id, func.count())
                                   .where(ArgillaRecord.conflict.is_not(None)).group_by(ArgillaRecord.dataset_id)
                                   ).all())
    out = [{"id": d.id, "name": d.name, "workspace": d.workspace, "queue": d.queue_name, "overlap": d.overlap,
            "records": d.record_count, "pushed_at": _iso(d.pushed_at), "pulled_at": _iso(d.pulled_at),
            "pulled": outcomes.get(d.id, {}), "conflicted_records": conflicts.get(d.id, 0), "progress": None}
           for d in rows]
    conn = conn or connection_settings()
    if with_progress and conn is not None and out:
        try:
            api = client(conn)
            for row in out:
                ds = find(api.datasets, name=row["name"], workspace=row["workspace"])
                row["progress"] = ds.progress() if ds is not None else {"error": "not on the server"}
        except Exception as e:
            for row in out:
                row["progress"] = {"error": failure_line(conn, e)}
    return out


def _iso(t: Optional[datetime]) -> Optional[str]:
    return t.isoformat(timespec="seconds") if t else None
