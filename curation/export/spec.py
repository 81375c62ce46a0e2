"""What an export is asked for: its filter over traces, its options, names and formats."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Optional

from core.errors import UserError
from core.vocabulary import BEHAVIORS, TRACE_STATUSES, Split, TraceStatus
from core.vocabulary import SPLITS as PROMPT_SPLITS
from curation.prompts.contamination import DEFAULT_THRESHOLD, ContaminationReport
from db.filters import TraceFilter

FORMATS = ("hf", "jsonl", "parquet")
DEFAULT_TEMPLATE = "<think>{reasoning}</think>\n\n{response}"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ExportError(UserError):
    """Bad export input or state; the message names the field."""


class ContaminationError(ExportError):
    def __init__(self, report: ContaminationReport):
        super().__init__("export refused: " + report.summary() + " (pass --allow-contamination to export anyway)")
        self.report = report
        self.result = report.to_dict()  # a job that fails on it keeps the overlaps


@dataclass
class ExportFilter(TraceFilter):
    """A TraceFilter with the export's defaults (approved traces of train-split prompts) and a quality floor."""

    statuses: list[str] = field(default_factory=lambda: [TraceStatus.APPROVED.value])
    splits: list[str] = field(default_factory=lambda: [Split.TRAIN.value])
    min_quality: Optional[int] = None  # annotation quality 1..5; traces without one are left out when set
    # DPO: the rejected side only from these generation runs (e.g. a trained student's own mistakes); empty: any
    rejected_run_ids: list[int] = field(default_factory=list)

    ALIASES: ClassVar[dict[str, str]] = {
        "status": "statuses", "sets": "set_names", "set": "set_names", "split": "splits", "mutation": "mutations",
        "behavior": "behaviors", "behaviour": "behaviors", "runs": "run_ids", "run": "run_ids",
        "queues": "queue_ids", "queue": "queue_ids", "quality": "min_quality", "rejected_runs": "rejected_run_ids"}

    def validate(self) -> None:
        bad = set(self.statuses) - set(TRACE_STATUSES)
        if not self.statuses or bad:
            raise ExportError(f"filter field 'statuses': {sorted(bad) or 'empty'} not among {TRACE_STATUSES}")
        bad = set(self.splits) - set(PROMPT_SPLITS)
        if not self.splits or bad:
            raise ExportError(f"filter field 'splits': {sorted(bad) or 'empty'} not among {PROMPT_SPLITS}")
        bad = set(self.behaviors or []) - set(BEHAVIORS)
        if bad:
            raise ExportError(f"filter field 'behaviors': {sorted(bad)} not among {BEHAVIORS}")
        if self.min_quality is not None and not 1 <= self.min_quality <= 5:
            raise ExportError(f"filter field 'min_quality': {self.min_quality} is not between 1 and 5")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ExportFilter":
        try:
            return super().from_dict(d)
        except ExportError:
            raise
        except ValueError as e:
            raise ExportError(str(e)) from None

    CLI_NAMES: ClassVar[dict[str, str]] = {"set_names": "sets", "run_ids": "runs", "queue_ids": "queues",
                                           "rejected_run_ids": "rejected_runs"}

    def cli_items(self) -> list[str]:
        """The `--filter` items that give this filter back through `parse` (fields left at their default are
        left out)."""
        default = ExportFilter()
        items = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name) or value in ([], "", None, False):
                continue
            text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value).lower() \
                if isinstance(value, bool) else str(value)
            items.append(f"{self.CLI_NAMES.get(f.name, f.name)}={text}")
        return items

    @classmethod
    def parse(cls, items: list[str]) -> "ExportFilter":
        """CLI form: `sets=xstest,advbench`, `min_quality=3`, `mutations=none,slang`, `status=approved`."""
        try:
            return super().parse(items)
        except ExportError:
            raise
        except ValueError as e:
            raise ExportError(str(e)) from None


@dataclass
class ExportOptions:
    reasoning_template: str = DEFAULT_TEMPLATE
    system_prompt: Optional[str] = None  # a fixed system prompt for inference, never the self-check one
    val_fraction: float = 0.1
    seed: int = 0
    near_dup_threshold: float = DEFAULT_THRESHOLD
    allow_contamination: bool = False
    max_pairs_per_prompt: int = 4

    def validate(self) -> None:
        if "{response}" not in self.reasoning_template:
            raise ExportError("option 'reasoning_template' must contain {response}")
        if not 0 <= self.val_fraction < 1:
            raise ExportError(f"option 'val_fraction' {self.val_fraction} must be in [0, 1)")
        if not 0 < self.near_dup_threshold <= 100:
            raise ExportError(f"option 'near_dup_threshold' {self.near_dup_threshold} must be in (0, 100]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ExportOptions":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ExportError(f"unknown export option(s) {sorted(unknown)}")
        return cls(**d)

