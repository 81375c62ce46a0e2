"""Argilla bulk annotation: the one module that talks to Argilla (SDK 2.8): connect, push, pull, status.

Nothing Argilla-typed leaves this module; callers get dicts. The SDK is imported inside functions (it is slow
to import and the web app must start fast).

- push: a queue's open traces (or a trace filter) become records `trace-<id>` in a dataset; re-pushing upserts
  by that id, so nothing is duplicated. Auto-labels become suggestions; the model's texts pre-fill the
  `corrected_*` text questions, which is how Argilla users edit model output.
- pull: submitted responses become Annotation rows (source "argilla") through curation.review.submit_annotation,
  so overlap, consensus and audit rules apply exactly as for UI annotations. Discards are recorded as skips,
  drafts are left for a later pull, and every handled response gets an ArgillaResponse row (pulls are
  idempotent). A trace whose version moved after the push for any reason other than an annotation starting its
  review is flagged as a conflict and its responses are not applied.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.audit import record
from curation.auth import PermissionDenied, require, user_dict
from curation.queues import COMPLY_LABELS, REFUSE_LABELS, TraceFilter
from db.engine import rational_home, write_engine
from db.models import (BEHAVIORS, DECISIONS, Annotation, ArgillaDataset, ArgillaRecord, ArgillaResponse,
                       AuditEvent, AutoLabel, Prompt, PromptSet, Queue, QueueItem, QueueMember, Trace, User,
                       utcnow)

Progress = Callable[[int, Optional[int], str], None]
RECORD_PREFIX = "trace-"
BATCH = 50
NO_PASSWORD = "!argilla-user-no-password"  # not an argon2 hash: never verifies, so no login until an admin sets one
OTHER_HARM = "other"
GUIDELINES = """\
# Reviewing safety reasoning traces

Each record is a prompt, the model's **reasoning** and its final **response**.

1. **decision** - approve (reasoning and response are right and can train the model as they are), reject (wrong
   or unusable), needs_edit (good enough once corrected: make the correction in the text questions).
2. **response_behavior** - what the response actually does: refuse, comply, or partial (a careful partial answer).
3. **harm_categories** - the harms the prompt asks for, if any.
4. **quality** - 1 (poor) to 5 (excellent) for the reasoning: does it name the real risk, weigh intent and harm,
   and lead to the response?
5. **corrected_reasoning / corrected_response** - pre-filled with the model's text. Edit them to fix the trace;
   leave them unchanged when no edit is needed.

Harmful prompts should get a refusal that explains the risk and, where possible, offers a safe alternative.
Benign prompts that only look sensitive should get a full, helpful answer. Discard a record you cannot judge.
"""


class ArgillaError(Exception):
    """Argilla is not configured, unreachable, or refused a request. Messages never contain the API key."""


# -- connection settings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArgillaConnection:
    url: str
    api_key: str = field(repr=False)
    workspace: str = "rational"

    def describe(self) -> str:
        return f"{self.url} (workspace '{self.workspace}', key {'set' if self.api_key else 'missing'})"


def _settings_path() -> Path:
    return rational_home() / "argilla.json"


def connection_settings() -> Optional[ArgillaConnection]:
    """ARGILLA_API_URL / ARGILLA_API_KEY / ARGILLA_WORKSPACE override what the settings page saved."""
    saved: dict[str, Any] = {}
    path = _settings_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ArgillaError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    url = os.environ.get("ARGILLA_API_URL") or saved.get("url") or ""
    key = os.environ.get("ARGILLA_API_KEY") or saved.get("api_key") or ""
    workspace = os.environ.get("ARGILLA_WORKSPACE") or saved.get("workspace") or "rational"
    if not url or not key:
        return None
    return ArgillaConnection(url.rstrip("/"), key, workspace)


def save_connection_settings(url: str, api_key: str, workspace: str = "rational") -> None:
    """Written atomically, readable by the owner only (it holds an API key)."""
    if not re.match(r"^https?://", url.strip()):
        raise ValueError(f"field 'url': '{url}' must start with http:// or https://")
    if not api_key.strip():
        raise ValueError("field 'api_key' is empty")
    path = _settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"url": url.strip().rstrip("/"), "api_key": api_key.strip(),
                   "workspace": workspace.strip() or "rational"}, f)
    os.replace(tmp, path)


def _require_conn(conn: Optional[ArgillaConnection]) -> ArgillaConnection:
    conn = conn or connection_settings()
    if conn is None:
        raise ArgillaError("Argilla is not configured: set ARGILLA_API_URL and ARGILLA_API_KEY (or save them on "
                           "the Argilla page)")
    return conn


def _scrub(conn: ArgillaConnection, text: str) -> str:
    for secret in (conn.api_key, os.environ.get("ARGILLA_HF_TOKEN")):
        text = text.replace(secret, "***") if secret else text
    return text


def _client(conn: ArgillaConnection, retries: int = 3):
    import argilla as rg

    # A private Hugging Face Space sits behind the Hub's auth: its token goes in a header beside the API key.
    hf_token = os.environ.get("ARGILLA_HF_TOKEN")
    extra = {"headers": {"Authorization": f"Bearer {hf_token}"}} if hf_token else {}
    return rg.Argilla(api_url=conn.url, api_key=conn.api_key, timeout=60, retries=retries, **extra)


def _find(lookup, **kw):
    """The SDK warns when a name is not found; not finding it is an expected answer here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lookup(**kw)


def status(conn: Optional[ArgillaConnection] = None) -> dict[str, Any]:
    """Whether the server answers with these credentials, and as whom."""
    conn = conn or connection_settings()
    if conn is None:
        return {"configured": False, "ok": False, "error": "not configured"}
    out: dict[str, Any] = {"configured": True, "url": conn.url, "workspace": conn.workspace, "ok": False}
    try:
        me = _client(conn, retries=0).me
        out.update(ok=True, username=me.username, role=str(getattr(me.role, "value", me.role)))
    except Exception as e:  # any failure is a status to show, never a crash of the page
        out["error"] = _scrub(conn, f"{type(e).__name__}: {e}")[:500]
    return out


# -- mapping (plain data; unit-testable without a server) ---------------------------------------------------------
def record_id(trace_id: int) -> str:
    return f"{RECORD_PREFIX}{trace_id}"


def trace_id_of(external_id: Any) -> Optional[int]:
    m = re.fullmatch(rf"{RECORD_PREFIX}(\d+)", str(external_id or ""))
    return int(m.group(1)) if m else None


def _behavior_of(label: str) -> Optional[str]:
    low = (label or "").strip().lower()
    if low in REFUSE_LABELS:
        return "refuse"
    if low in COMPLY_LABELS:
        return "comply"
    return low if low in BEHAVIORS else None


def _score(score: Optional[float]) -> Optional[float]:
    return float(score) if score is not None and 0.0 <= float(score) <= 1.0 else None


def suggestions_from_labels(labels: Iterable[dict], harm_labels: list[str]) -> list[dict]:
    """One suggestion per question (Argilla holds one), the highest-scored auto-label winning."""
    best: dict[str, dict] = {}
    harms: dict[str, dict] = {}
    for al in labels:
        kind, label = al.get("kind"), al.get("label") or ""
        question = value = None
        if kind == "decision" and label.lower() in DECISIONS:
            question, value = "decision", label.lower()
        elif kind in ("refusal", "judge", "decision") and _behavior_of(label):
            question, value = "response_behavior", _behavior_of(label)
        elif kind in ("harm", "harm_category") and label in harm_labels:
            harms.setdefault(label, al)
            continue
        if question is None:
            continue
        cand = {"question": question, "value": value, "score": _score(al.get("score")),
                "agent": str(al.get("agent") or "")[:200]}
        old = best.get(question)
        if old is None or (cand["score"] or -1.0) > (old["score"] or -1.0):
            best[question] = cand
    out = list(best.values())
    if harms:
        out.append({"question": "harm_categories", "value": sorted(harms), "score": None,
                    "agent": ",".join(sorted({str(a.get("agent") or "") for a in harms.values()}))[:200]})
    return out


def record_spec(trace: dict, labels: Iterable[dict], harm_labels: list[str]) -> dict:
    """The Argilla record for one trace, as plain data."""
    fields = {"prompt": trace["prompt"]}
    for name in ("reasoning", "response"):
        if trace.get(name):
            fields[name] = trace[name]
    suggestions = suggestions_from_labels(labels, harm_labels)
    agent = f"model:{trace.get('model') or 'unknown'}"[:200]
    for name in ("reasoning", "response"):
        if trace.get(name):
            suggestions.append({"question": f"corrected_{name}", "value": trace[name], "score": None,
                                "agent": agent})
    metadata = {"set": trace.get("set_name") or "", "expected_behavior": trace.get("expected_behavior") or "",
                "mutation": trace.get("mutation") or "(none)", "trace_id": trace["id"],
                "trace_version": trace["version"]}
    return {"id": record_id(trace["id"]), "fields": fields, "metadata": metadata, "suggestions": suggestions}


def _value(values: dict, name: str) -> Any:
    v = (values or {}).get(name)
    return v.get("value") if isinstance(v, dict) else v


def annotation_from_response(values: Optional[dict], reasoning: str, response: str) -> dict:
    """Argilla response values -> submit_annotation keyword arguments. A corrected text equal to the model's
    is no edit."""
    def edit(name: str, original: str) -> Optional[str]:
        text = _value(values, name)
        return text if isinstance(text, str) and text.strip() and text.strip() != original.strip() else None

    quality = _value(values, "quality")
    return {"decision": _value(values, "decision"), "behavior_label": _value(values, "response_behavior"),
            "harm_categories": [h for h in (_value(values, "harm_categories") or []) if h != OTHER_HARM],
            "quality": int(quality) if quality is not None else None,
            "edited_reasoning": edit("corrected_reasoning", reasoning),
            "edited_response": edit("corrected_response", response)}


def conflict_reason(trace_version: int, baseline: int, events_since: list[str]) -> Optional[str]:
    """Why a trace counts as changed locally since Argilla annotators saw `baseline`, or None. Only an
    annotation starting the review ('review_started') may move the version without a conflict."""
    if trace_version == baseline:
        return None
    others = [a for a in events_since if a != "review_started"]
    if others:
        return f"trace changed locally after the push ({', '.join(sorted(set(others)))}; version {baseline} -> " \
               f"{trace_version})"
    if trace_version - baseline != len(events_since):
        return f"trace version moved {baseline} -> {trace_version} since the push"
    return None


# -- push --------------------------------------------------------------------------------------------------------
def _settings(rg, harm_labels: list[str], overlap: int):
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[rg.TextField(name="prompt", use_markdown=False),
                rg.TextField(name="reasoning", use_markdown=False, required=False),
                rg.TextField(name="response", use_markdown=False, required=False)],
        questions=[rg.LabelQuestion(name="decision", labels=list(DECISIONS)),
                   rg.LabelQuestion(name="response_behavior", labels=list(BEHAVIORS), required=False),
                   rg.MultiLabelQuestion(name="harm_categories", labels=harm_labels, required=False),
                   rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5], required=False),
                   rg.TextQuestion(name="corrected_reasoning", use_markdown=False, required=False),
                   rg.TextQuestion(name="corrected_response", use_markdown=False, required=False)],
        metadata=[rg.TermsMetadataProperty(name="set"), rg.TermsMetadataProperty(name="expected_behavior"),
                  rg.TermsMetadataProperty(name="mutation"), rg.IntegerMetadataProperty(name="trace_id"),
                  rg.IntegerMetadataProperty(name="trace_version")],
        distribution=rg.TaskDistribution(min_submitted=overlap),
    )


def _to_record(rg, spec: dict):
    sugg = [rg.Suggestion(question_name=s["question"], value=s["value"], score=s["score"], agent=s["agent"] or None,
                          type="model") for s in spec["suggestions"]]
    return rg.Record(id=spec["id"], fields=spec["fields"], metadata=spec["metadata"], suggestions=sugg)


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
    conn = _require_conn(conn)
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
        client = _client(conn)
        if _find(client.workspaces, name=conn.workspace) is None:
            rg.Workspace(name=conn.workspace, client=client).create()
        ds = _find(client.datasets, name=name, workspace=conn.workspace)
        if ds is None:
            ds = rg.Dataset(name=name, workspace=conn.workspace, settings=_settings(rg, harm_labels, overlap),
                            client=client).create()
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            with Session(engine) as s:
                traces, labels = _trace_rows(s, chunk), _labels_by_trace(s, chunk)
            specs = [record_spec(t, labels.get(t["id"], []), harm_labels) for t in traces]
            ds.records.log([_to_record(rg, sp) for sp in specs], batch_size=BATCH)
            _save_pushed(engine, me.id, name, conn.workspace, str(ds.id), q, flt, overlap, traces)
            if progress:
                progress(start + len(chunk), len(ids), f"pushed {start + len(chunk)} of {len(ids)} traces")
    except (ValueError, PermissionDenied):
        raise
    except Exception as e:
        raise ArgillaError(_scrub(conn, f"push to {conn.url} failed: {type(e).__name__}: {e}")[:1000]) from None
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


# -- pull --------------------------------------------------------------------------------------------------------
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
    """The local account for an Argilla username, created as an annotator without a usable password (an admin
    sets one if that person should log in here). One IMMEDIATE transaction with its audit event:
    db.crud.create_user hashes inside a deferred SQLite read, which concurrent writers (the worker's heartbeat)
    turn into "database is locked"."""
    with Session(write_engine(engine), expire_on_commit=False) as s:
        u = s.execute(select(User).where(User.username == username)).scalars().first()
        if u is not None:
            return u
        require(s, actor_id, "manage_users")
        u = User(username=username, password_hash=NO_PASSWORD, role="annotator")
        s.add(u)
        s.flush()
        record(s, actor_id, "user", u.id, "create", None, {**user_dict(u), "via": "argilla"})
        s.commit()
    stats.users_created.append(username)
    return u


def _ensure_member(engine: Engine, actor_id: int, queue_id: Optional[int], user_id: int) -> Optional[int]:
    """Argilla annotators of a queue's dataset work that queue: add them as members. None if the queue is gone."""
    from curation.queues import update_queue

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
    from curation.review import ConflictError, submit_annotation

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
                                source="argilla", **kwargs)
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


def _remote_records(client, dataset_id, limit: int = 100):
    """Raw record models (not rg.Record: the SDK's Record cannot hold a response whose values are null)."""
    offset = 0
    while True:
        page = client.api.records.list(dataset_id=dataset_id, offset=offset, limit=limit, with_suggestions=False,
                                       with_responses=True)
        yield from page
        if len(page) < limit:
            return
        offset += len(page)


def pull(engine: Engine, actor: User | int, *, dataset: Optional[str] = None,
         conn: Optional[ArgillaConnection] = None, progress: Optional[Progress] = None) -> dict[str, Any]:
    """Pull submitted and discarded responses of one pushed dataset (or all of them) into annotations."""
    conn = _require_conn(conn)
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
        client = _client(conn)
        names = {str(u.id): u.username for u in client.api.users.list()}
        for d in datasets:
            ds = _find(client.datasets, name=d.name, workspace=d.workspace)
            if ds is None:
                raise ArgillaError(f"dataset '{d.name}' is gone from workspace '{d.workspace}' on {conn.url}")
            for rec in _remote_records(client, ds.id):
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
        raise ArgillaError(_scrub(conn, f"pull from {conn.url} failed: {type(e).__name__}: {e}")[:1000]) from None
    return {"datasets": [d.name for d in datasets], **stats.as_dict()}


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
            client = _client(conn)
            for row in out:
                ds = _find(client.datasets, name=row["name"], workspace=row["workspace"])
                row["progress"] = ds.progress() if ds is not None else {"error": "not on the server"}
        except Exception as e:
            for row in out:
                row["progress"] = {"error": _scrub(conn, f"{type(e).__name__}: {e}")[:300]}
    return out


def _iso(t: Optional[datetime]) -> Optional[str]:
    return t.isoformat(timespec="seconds") if t else None
