"""Export snapshots with their lineage, and training runs with their metrics and checkpoints."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import JOB_STATUSES
from db.models.base import ArtifactPath, check_in, utcnow

EXPORT_KINDS = ("sft", "dpo")
EXPORT_STATUSES = ("building", "ready", "failed")
TRAINING_METHODS = ("sft", "dpo")


class ExportSnapshot(SQLModel, table=True):
    """An immutable, named export: its filter, options, counts, content sha256 and folder. `ready` only once
    every file is in place and every lineage row is written."""

    __tablename__ = "export_snapshot"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_export_snapshot_project_name"),
        CheckConstraint(check_in("kind", EXPORT_KINDS), name="ck_export_snapshot_kind"),
        CheckConstraint(check_in("status", EXPORT_STATUSES), name="ck_export_snapshot_status"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(default=1, foreign_key="project.id")
    name: str = Field(max_length=200)
    kind: str = Field(max_length=10)
    status: str = Field(default="building", max_length=20)
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    formats: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    path: Optional[str] = Field(default=None, sa_type=ArtifactPath)
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
        CheckConstraint(check_in("method", TRAINING_METHODS), name="ck_training_run_method"),
        CheckConstraint(check_in("status", JOB_STATUSES), name="ck_training_run_status"),
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
    output_dir: Optional[str] = Field(default=None, sa_type=ArtifactPath)
    adapter_path: Optional[str] = Field(default=None, sa_type=ArtifactPath)
    merged_path: Optional[str] = Field(default=None, sa_type=ArtifactPath)
    last_checkpoint: Optional[str] = Field(default=None, sa_type=ArtifactPath)
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
    path: str = Field(sa_type=ArtifactPath)
    created_at: datetime = Field(default_factory=utcnow)
