"""Eval runs, their outputs, people's verdicts on outputs, and blind A/B votes."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import JOB_STATUSES
from db.models.base import ArtifactPath, check_in, utcnow

VOTE_CHOICES = ("a", "b", "tie", "both_bad")


class EvalRun(SQLModel, table=True):
    """One model (+ optional LoRA adapter) answering one suite. Identity fields make two runs comparable."""

    __tablename__ = "eval_run"
    __table_args__ = (CheckConstraint(check_in("status", JOB_STATUSES), name="ck_eval_run_status"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    suite: str = Field(max_length=100, index=True)
    suite_version: str = Field(max_length=100)  # definition version + hash of the selected prompts
    model: str = Field(max_length=500)  # as given (name or path)
    model_path: str = Field(default="", max_length=1000)  # resolved local folder
    adapter_path: Optional[str] = Field(default=None, sa_type=ArtifactPath)
    adapter_sha256: Optional[str] = Field(default=None, max_length=64)  # over the adapter weight files
    training_run_id: Optional[int] = None  # set when evaluated through a training run
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
        CheckConstraint(check_in("choice", VOTE_CHOICES), name="ck_pair_vote_choice"),
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
