"""Table models. Later issues add tables through new Alembic migrations."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

BEHAVIORS = ("refuse", "comply", "partial")
SPLITS = ("train", "eval")
ROLES = ("admin", "reviewer", "annotator")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in values)})"


class Project(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="ck_app_user_role"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=20)
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class PromptSet(SQLModel, table=True):
    __tablename__ = "prompt_set"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_prompt_set_project_name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(default="prompts", max_length=40)  # prompts | jailbreak_templates
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    source: str = Field(default="", max_length=500)
    license: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class Prompt(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_prompt_project_sha256"),
        CheckConstraint(_in("expected_behavior", BEHAVIORS), name="ck_prompt_behavior"),
        CheckConstraint(_in("split", SPLITS), name="ck_prompt_split"),
        Index("ix_prompt_set_behavior_split", "set_id", "expected_behavior", "split"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id")
    set_id: int = Field(foreign_key="prompt_set.id", index=True)
    import_id: Optional[int] = Field(default=None, foreign_key="prompt_import.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    sha256: str = Field(max_length=64)
    source_id: Optional[str] = Field(default=None, max_length=200)
    category: Optional[str] = Field(default=None, max_length=200, index=True)
    expected_behavior: str = Field(max_length=10)
    split: str = Field(default="train", max_length=10)
    mutation: Optional[str] = Field(default=None, max_length=100, index=True)
    parent_prompt_id: Optional[int] = Field(default=None, foreign_key="prompt.id", index=True)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class PromptImport(SQLModel, table=True):
    """One import of one file into one set: its mapping, counts and error report."""

    __tablename__ = "prompt_import"
    id: Optional[int] = Field(default=None, primary_key=True)
    # Null when an all-or-nothing import failed before its set existed; set_name still says where it was going.
    set_id: Optional[int] = Field(default=None, foreign_key="prompt_set.id", index=True)
    set_name: str = Field(max_length=200)
    source_path: str = Field(max_length=1000)
    file_format: str = Field(max_length=20)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="running", max_length=20)  # running | succeeded | failed
    rows_read: int = 0
    inserted: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class Job(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="ck_job_status"),
        Index("ix_job_status_id", "status", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40, index=True)
    status: str = Field(default="queued", max_length=20)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    progress_done: int = 0
    progress_total: Optional[int] = None
    message: str = Field(default="", max_length=500)
    log_tail: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    result: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    resumable: bool = False
    attempts: int = 0
    cancel_requested: bool = False
    worker_id: Optional[str] = Field(default=None, max_length=200)
    heartbeat_at: Optional[datetime] = None
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


TRACE_STATUSES = ("pending", "in_review", "needs_adjudication", "approved", "rejected")


class GenerationRun(SQLModel, table=True):
    """One generation over a selection of prompts: model, backend, strategy, templates and sampling params."""

    __tablename__ = "generation_run"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    model: str = Field(max_length=500)
    backend: str = Field(max_length=40)  # vllm | openai | transformers
    strategy: str = Field(default="single", max_length=40)  # single | prefill | two_pass
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    templates: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", max_length=20)
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class Trace(SQLModel, table=True):
    """A model's reasoning + answer for one prompt. The model's text is never overwritten; edits live in
    annotations. `version` is the optimistic lock."""

    __table_args__ = (
        UniqueConstraint("run_id", "prompt_id", "sample_index", name="uq_trace_run_prompt_sample"),
        CheckConstraint(_in("status", TRACE_STATUSES), name="ck_trace_status"),
        Index("ix_trace_status_id", "status", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    run_id: Optional[int] = Field(default=None, foreign_key="generation_run.id", index=True)
    sample_index: int = 0
    reasoning: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    response: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    raw: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    parse_ok: bool = False
    strategy: str = Field(default="single", max_length=40)
    model: str = Field(default="", max_length=500)
    backend: str = Field(default="", max_length=40)
    template_version: Optional[str] = Field(default=None, max_length=100)
    sampling: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    gen_seconds: Optional[float] = None
    status: str = Field(default="pending", max_length=30)
    decided_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    decided_how: Optional[str] = Field(default=None, max_length=40)  # consensus | adjudication | bulk | auto
    decided_at: Optional[datetime] = None
    version: int = 1
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class AutoLabel(SQLModel, table=True):
    """A machine suggestion on a trace (refusal judge, decision, consistency, format, LLM judge). Never final."""

    __tablename__ = "auto_label"
    __table_args__ = (UniqueConstraint("trace_id", "kind", "agent", name="uq_auto_label_trace_kind_agent"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    kind: str = Field(max_length=40)  # refusal | decision | consistency | format | judge | matches_expected
    agent: str = Field(max_length=100)  # e.g. strmatch-gcg, strmatch-xstest, llm:<model>
    label: Optional[str] = Field(default=None, max_length=100)
    score: Optional[float] = None
    rationale: Optional[str] = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


# -- review workflow (issue 4): annotations, queues, claims, audit, per-user settings -------------------------
DECISIONS = ("approve", "reject", "needs_edit")
ANNOTATION_SOURCES = ("ui", "argilla")


class Annotation(SQLModel, table=True):
    """One person's judgement of one trace. Edits live here; the trace's model text is never overwritten."""

    __table_args__ = (
        UniqueConstraint("trace_id", "annotator_id", name="uq_annotation_trace_annotator"),
        CheckConstraint(_in("decision", DECISIONS), name="ck_annotation_decision"),
        CheckConstraint(_in("source", ANNOTATION_SOURCES), name="ck_annotation_source"),
        CheckConstraint("quality IS NULL OR (quality BETWEEN 1 AND 5)", name="ck_annotation_quality"),
        Index("ix_annotation_annotator_created", "annotator_id", "created_at"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    annotator_id: int = Field(foreign_key="app_user.id")
    queue_id: Optional[int] = Field(default=None, foreign_key="review_queue.id", index=True)
    decision: str = Field(max_length=20)
    behavior_label: Optional[str] = Field(default=None, max_length=10)  # refuse | comply | partial
    reasoning_sound: Optional[bool] = None
    harm_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    quality: Optional[int] = None
    edited_reasoning: Optional[str] = Field(default=None, sa_column=Column(Text))
    edited_response: Optional[str] = Field(default=None, sa_column=Column(Text))
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    seconds_spent: Optional[float] = None
    source: str = Field(default="ui", max_length=10)
    trace_version: int = 1  # the trace version the annotator saw
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Queue(SQLModel, table=True):
    """A work list: a filter over traces, materialised into queue items, worked by members with overlap N."""

    __tablename__ = "review_queue"
    __table_args__ = (CheckConstraint("overlap >= 1", name="ck_review_queue_overlap"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    overlap: int = 1
    lease_seconds: int = 600
    is_active: bool = True
    version: int = 1
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)


class QueueMember(SQLModel, table=True):
    __tablename__ = "queue_member"
    queue_id: int = Field(foreign_key="review_queue.id", primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", primary_key=True, index=True)
    added_at: datetime = Field(default_factory=utcnow)


class QueueItem(SQLModel, table=True):
    """A trace in a queue, with its priority (0 = auto-labels disagree or are inconsistent, 1 = the rest).
    `is_open` mirrors whether the trace still takes annotations, so claiming skips finished work by index."""

    __tablename__ = "queue_item"
    __table_args__ = (Index("ix_queue_item_claim", "queue_id", "is_open", "priority", "trace_id"),)
    queue_id: int = Field(foreign_key="review_queue.id", primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", primary_key=True, index=True)
    priority: int = 1
    is_open: bool = True
    added_at: datetime = Field(default_factory=utcnow)


class Claim(SQLModel, table=True):
    """A lease on a trace for one user. kind 'active' counts against the overlap until it expires;
    kind 'skip' only keeps the trace away from that user until it expires."""

    __table_args__ = (
        UniqueConstraint("trace_id", "user_id", name="uq_claim_trace_user"),
        Index("ix_claim_trace_kind_expires", "trace_id", "kind", "expires_at"),
        Index("ix_claim_user_kind", "user_id", "kind"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id")
    user_id: int = Field(foreign_key="app_user.id")
    queue_id: int = Field(foreign_key="review_queue.id", index=True)
    kind: str = Field(default="active", max_length=10)
    claimed_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class AuditEvent(SQLModel, table=True):
    """Who changed what: written in the same transaction as every change to a trace, annotation, queue or user."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity", "entity_id", "id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    actor_id: Optional[int] = Field(default=None, foreign_key="app_user.id", index=True)
    entity: str = Field(max_length=40)
    entity_id: int
    action: str = Field(max_length=40)
    before: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    after: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    at: datetime = Field(default_factory=utcnow, index=True)


class UserSetting(SQLModel, table=True):
    """Per-user preferences: harm categories whose text stays hidden behind a content warning until clicked."""

    __tablename__ = "user_setting"
    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    blur_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = 1
    updated_at: datetime = Field(default_factory=utcnow)


# -- export snapshots and training runs (issue 5) --------------------------------------------------------------
EXPORT_KINDS = ("sft", "dpo")
EXPORT_STATUSES = ("building", "ready", "failed")
TRAINING_METHODS = ("sft", "dpo")
TRAINING_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class ExportSnapshot(SQLModel, table=True):
    """An immutable, named export: its filter, options, counts, content sha256 and folder. `ready` only once
    every file is in place and every lineage row is written."""

    __tablename__ = "export_snapshot"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_export_snapshot_project_name"),
        CheckConstraint(_in("kind", EXPORT_KINDS), name="ck_export_snapshot_kind"),
        CheckConstraint(_in("status", EXPORT_STATUSES), name="ck_export_snapshot_status"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(default=1, foreign_key="project.id")
    name: str = Field(max_length=200)
    kind: str = Field(max_length=10)
    status: str = Field(default="building", max_length=20)
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    formats: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    path: Optional[str] = Field(default=None, max_length=1000)
    sha256: Optional[str] = Field(default=None, max_length=64)
    row_count: int = 0
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    contamination: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class ExportItem(SQLModel, table=True):
    """Lineage: one trace version (and the annotation version whose edit was used) inside one export row.
    annotation_id is a plain integer, not a foreign key, so this migration branch stays independent of review's."""

    __tablename__ = "export_item"
    __table_args__ = (Index("ix_export_item_export_row", "export_id", "row_index"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    export_id: int = Field(foreign_key="export_snapshot.id")
    row_index: int
    split: str = Field(max_length=20)  # train | validation
    role: str = Field(max_length=20)  # sft | chosen | rejected
    source: str = Field(default="trace", max_length=20)  # sft: trace; dpo: edit | status
    trace_id: int = Field(foreign_key="trace.id", index=True)
    trace_version: int
    annotation_id: Optional[int] = None
    annotation_version: Optional[int] = None


class TrainingRun(SQLModel, table=True):
    """One LoRA training (SFT or DPO) of a base model on an export snapshot, run by the worker in a subprocess."""

    __tablename__ = "training_run"
    __table_args__ = (
        CheckConstraint(_in("method", TRAINING_METHODS), name="ck_training_run_method"),
        CheckConstraint(_in("status", TRAINING_STATUSES), name="ck_training_run_status"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    export_id: Optional[int] = Field(default=None, foreign_key="export_snapshot.id", index=True)
    export_name: str = Field(default="", max_length=200)
    base_model: str = Field(max_length=500)
    method: str = Field(max_length=10)
    preset: str = Field(default="", max_length=40)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", max_length=20)
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    output_dir: Optional[str] = Field(default=None, max_length=1000)
    adapter_path: Optional[str] = Field(default=None, max_length=1000)
    merged_path: Optional[str] = Field(default=None, max_length=1000)
    last_checkpoint: Optional[str] = Field(default=None, max_length=1000)
    global_step: int = 0
    max_steps: Optional[int] = None
    pid: Optional[int] = None
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    log_tail: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class TrainingMetric(SQLModel, table=True):
    """One logged training step (loss, lr, grad norm, tokens/s) or one evaluation (eval loss)."""

    __tablename__ = "training_metric"
    __table_args__ = (Index("ix_training_metric_run_step", "run_id", "step"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="training_run.id")
    step: int
    kind: str = Field(default="train", max_length=10)  # train | eval
    epoch: Optional[float] = None
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    grad_norm: Optional[float] = None
    tokens_per_s: Optional[float] = None
    values: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class TrainingCheckpoint(SQLModel, table=True):
    __tablename__ = "training_checkpoint"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_training_checkpoint_run_step"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="training_run.id", index=True)
    step: int
    path: str = Field(max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)


# -- evaluation (issue 6) -------------------------------------------------------------------------------------
EVAL_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
VOTE_CHOICES = ("a", "b", "tie", "both_bad")


class EvalRun(SQLModel, table=True):
    """One model (+ optional LoRA adapter) answering one suite. Identity fields make two runs comparable."""

    __tablename__ = "eval_run"
    __table_args__ = (CheckConstraint(_in("status", EVAL_STATUSES), name="ck_eval_run_status"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    suite: str = Field(max_length=100, index=True)
    suite_version: str = Field(max_length=100)  # definition version + hash of the selected prompts
    model: str = Field(max_length=500)  # as given (name or path)
    model_path: str = Field(default="", max_length=1000)  # resolved local folder
    adapter_path: Optional[str] = Field(default=None, max_length=1000)
    adapter_sha256: Optional[str] = Field(default=None, max_length=64)  # over the adapter weight files
    training_run_id: Optional[int] = None  # training issue's run, when evaluated through --run
    backend: str = Field(max_length=40)
    sampling: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    judges: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", max_length=20)
    n_prompts: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    job_id: Optional[int] = Field(default=None, foreign_key="job.id")
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class EvalOutput(SQLModel, table=True):
    """One answer in an eval run. `failed` is the judge's verdict against the prompt's expected behaviour;
    `human_failed` (when set) overrides it. `version` is the optimistic lock for human labels."""

    __tablename__ = "eval_output"
    __table_args__ = (UniqueConstraint("run_id", "prompt_id", name="uq_eval_output_run_prompt"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="eval_run.id", index=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    set_name: str = Field(max_length=200)
    category: Optional[str] = Field(default=None, max_length=200)
    mutation: Optional[str] = Field(default=None, max_length=100)
    expected_behavior: str = Field(max_length=10)
    metric: str = Field(max_length=40)  # asr | false_refusal_rate | unacceptable_rate
    reasoning: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    response: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    raw: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    parse_ok: bool = False
    refused: bool = False  # the judges' verdict (LLM judge when configured, else string match)
    failed: bool = False
    judge_labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    human_refused: Optional[bool] = None
    human_failed: Optional[bool] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    gen_seconds: Optional[float] = None
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)


class EvalLabel(SQLModel, table=True):
    """A person's verdict on an eval output (history; the latest one is copied onto the output)."""

    __tablename__ = "eval_label"
    id: Optional[int] = Field(default=None, primary_key=True)
    output_id: int = Field(foreign_key="eval_output.id", index=True)
    user_id: Optional[int] = Field(default=None, foreign_key="app_user.id")
    refused: bool
    failed: bool
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow)


class PairVote(SQLModel, table=True):
    """A blind A/B vote. The page shows sides in random order; the row keeps the true identities:
    output_a belongs to run_a, and `a_on_left` records what the voter saw."""

    __tablename__ = "pair_vote"
    __table_args__ = (
        UniqueConstraint("voter_id", "output_a_id", "output_b_id", name="uq_pair_vote_voter_pair"),
        CheckConstraint(_in("choice", VOTE_CHOICES), name="ck_pair_vote_choice"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    run_a_id: int = Field(foreign_key="eval_run.id", index=True)
    run_b_id: int = Field(foreign_key="eval_run.id", index=True)
    prompt_id: int = Field(foreign_key="prompt.id")
    output_a_id: int = Field(foreign_key="eval_output.id")
    output_b_id: int = Field(foreign_key="eval_output.id")
    voter_id: int = Field(foreign_key="app_user.id", index=True)
    a_on_left: bool
    shown_choice: str = Field(max_length=10)  # left | right | tie | both_bad, as clicked
    choice: str = Field(max_length=10)  # a | b | tie | both_bad, resolved to the true runs
    seconds_spent: Optional[float] = None
    created_at: datetime = Field(default_factory=utcnow)


# -- Argilla bulk annotation (issue 7) ------------------------------------------------------------------------
# queue_id / annotation_id are plain integers (no foreign key) so this migration branch stays independent of
# review's (0003), like ExportItem.annotation_id.
ARGILLA_OUTCOMES = ("annotated", "skipped", "conflict", "invalid")


class ArgillaDataset(SQLModel, table=True):
    """A dataset we pushed to an Argilla workspace: what selection it came from and when it was synced."""

    __tablename__ = "argilla_dataset"
    __table_args__ = (UniqueConstraint("workspace", "name", name="uq_argilla_dataset_workspace_name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    workspace: str = Field(max_length=200)
    argilla_id: Optional[str] = Field(default=None, max_length=64)
    queue_id: Optional[int] = None
    queue_name: Optional[str] = Field(default=None, max_length=200)
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    overlap: int = 1
    record_count: int = 0
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    pushed_at: Optional[datetime] = None
    pulled_at: Optional[datetime] = None


class ArgillaRecord(SQLModel, table=True):
    """One trace inside a pushed dataset (the Argilla record id is `trace-<trace_id>`). `synced_version` is the
    trace version the Argilla annotators saw, moved forward only by our own pulls."""

    __tablename__ = "argilla_record"
    __table_args__ = (UniqueConstraint("dataset_id", "trace_id", name="uq_argilla_record_dataset_trace"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="argilla_dataset.id", index=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    pushed_version: int
    synced_version: int
    synced_at: datetime = Field(default_factory=utcnow)
    pushed_at: datetime = Field(default_factory=utcnow)
    conflict: Optional[str] = Field(default=None, sa_column=Column(Text))


class ArgillaResponse(SQLModel, table=True):
    """What one pull did with one Argilla user's response to one record; its existence makes pulls idempotent."""

    __tablename__ = "argilla_response"
    __table_args__ = (
        UniqueConstraint("dataset_id", "trace_id", "argilla_user_id", name="uq_argilla_response_record_user"),
        CheckConstraint(_in("outcome", ARGILLA_OUTCOMES), name="ck_argilla_response_outcome"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="argilla_dataset.id", index=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    argilla_user_id: str = Field(max_length=64)
    argilla_username: str = Field(default="", max_length=100)
    user_id: Optional[int] = Field(default=None, foreign_key="app_user.id")
    status: str = Field(max_length=20)  # submitted | discarded
    outcome: str = Field(max_length=20)
    annotation_id: Optional[int] = None
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    pulled_at: datetime = Field(default_factory=utcnow)


class TemplateVersion(SQLModel, table=True):
    """One saved version of an editable template (self-check system prompts, mutation rewrites, judge rubrics).
    Versions are never edited in place: saving adds version + 1, and runs record the exact text they used."""

    __tablename__ = "template_version"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_template_version_name_version"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)  # e.g. self_check.refuse, mutation.slang
    version: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    note: str = Field(default="", max_length=500)
    created_by: Optional[int] = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
