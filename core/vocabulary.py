"""The words every layer shares: behaviours, splits, roles, statuses, auto-label kinds and the default model.

They are StrEnums, so a member is its own database value (`TraceStatus.APPROVED == "approved"`).
"""
from __future__ import annotations

from enum import StrEnum

DEFAULT_MODEL = "smollm2-135m-instruct"  # the embedded SmolLM2-135M-Instruct (see curation.backends.catalog)
UNMUTATED = "none"  # the mutation filter value that selects prompts that were not mutated


class Behavior(StrEnum):
    REFUSE = "refuse"
    COMPLY = "comply"
    PARTIAL = "partial"


class Split(StrEnum):
    TRAIN = "train"
    EVAL = "eval"


class Role(StrEnum):
    ADMIN = "admin"
    REVIEWER = "reviewer"
    ANNOTATOR = "annotator"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TraceStatus(StrEnum):
    PENDING = "pending"
    IN_REVIEW = "in_review"
    NEEDS_ADJUDICATION = "needs_adjudication"
    APPROVED = "approved"
    REJECTED = "rejected"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    NEEDS_EDIT = "needs_edit"


class JudgeLabel(StrEnum):
    """What a refusal judge says a response did (see curation/judges/data/GUIDE.md)."""

    REFUSED = "refused"
    COMPLIED = "complied"
    PARTIAL = "partial"


class LabelKind(StrEnum):
    """Kinds of machine suggestion on a trace (AutoLabel.kind)."""

    REFUSAL = "refusal"
    DECISION = "decision"
    CONSISTENCY = "consistency"
    FORMAT = "format"
    JUDGE = "judge"
    MATCHES_EXPECTED = "matches_expected"
    QUALITY = "quality"  # the quality gates: repetition, echo, off-topic
    USABLE = "usable"  # parses, matches the expected behaviour and passes every gate: the yield
    AUTO_APPROVE = "auto_approve"  # usable and consistent: what the loop's strict filter keeps


def _values(*members: StrEnum) -> tuple[str, ...]:
    """Plain strings, so messages and stored JSON never show an enum's repr."""
    return tuple(m.value for m in members)


BEHAVIORS = _values(*Behavior)
SPLITS = _values(*Split)
ROLES = _values(*Role)
JOB_STATUSES = _values(*JobStatus)
JOB_ACTIVE = _values(JobStatus.QUEUED, JobStatus.RUNNING)
TRACE_STATUSES = _values(*TraceStatus)
OPEN_STATUSES = _values(TraceStatus.PENDING, TraceStatus.IN_REVIEW)  # a trace still takes annotations
FINAL_STATUSES = _values(TraceStatus.APPROVED, TraceStatus.REJECTED)
DECISIONS = _values(*Decision)
JUDGE_LABELS = _values(*JudgeLabel)
# A judge's label as the behaviour it shows, and back (annotators label behaviour: refuse | comply | partial).
BEHAVIOR_OF_JUDGE_LABEL = {JudgeLabel.REFUSED.value: Behavior.REFUSE.value, JudgeLabel.COMPLIED.value:
                           Behavior.COMPLY.value, JudgeLabel.PARTIAL.value: Behavior.PARTIAL.value}
JUDGE_LABEL_OF_BEHAVIOR = {b: j for j, b in BEHAVIOR_OF_JUDGE_LABEL.items()}

# Harm categories whose text an annotator sees only after a click until they choose otherwise (My settings): the
# ones that harm readers most. Matched as words in the category name, since benchmarks spell them differently.
SENSITIVE_BY_DEFAULT = ("self harm", "selfharm", "suicid", "eating disorder", "sexual", "child", "mental health",
                        "abuse", "gore")


def sensitive_by_default(category: str | None) -> bool:
    """A team's own CSV spells it "mental_health" or "Self-Harm": separators and case do not matter."""
    low = " ".join((category or "").lower().replace("_", " ").replace("-", " ").split())
    return any(word in low for word in SENSITIVE_BY_DEFAULT)
