"""The one filter builder over prompts and traces: every list, queue, export, generation selection, suite and
compare filter is built from these pieces, so "unmutated", literal search and set membership mean one thing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Iterable, Optional

from sqlalchemy import and_, exists, func, or_, select

from core.vocabulary import BEHAVIORS, SPLITS, TRACE_STATUSES, UNMUTATED, Behavior, LabelKind
from db.models import Annotation, AutoLabel, Prompt, PromptSet, QueueItem, Trace

LEGACY_UNMUTATED = "(none)"  # what older queue filters stored for UNMUTATED
REFUSE_LABELS = ("refuse", "refusal", "refused")
COMPLY_LABELS = ("comply", "complied", "compliance")
INCONSISTENT_LABELS = ("inconsistent", "no", "false", "mismatch", "0")


def like_pattern(text: str) -> str:
    """A LIKE pattern that matches `text` literally anywhere (wildcards escaped with a backslash)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def text_search(text: str, *columns):
    """Case-insensitive literal search over any of `columns`."""
    pat = like_pattern(text)
    return or_(*(c.ilike(pat, escape="\\") for c in columns))


def normalise_mutations(values: Iterable[str]) -> list[str]:
    return [UNMUTATED if v == LEGACY_UNMUTATED else v for v in values]


def mutation_condition(column, values: Iterable[str]):
    """`column` is one of the named mutations, or NULL where UNMUTATED is among them."""
    values = normalise_mutations(values)
    named = [m for m in values if m != UNMUTATED]
    conds = [column.in_(named)] if named else []
    if UNMUTATED in values:
        conds.append(column.is_(None))
    return or_(*conds)


def in_sets(names: Iterable[str], project_id: Optional[int] = None):
    """Prompt.set_id is one of the named sets."""
    q = select(PromptSet.id).where(PromptSet.name.in_(list(names)))
    if project_id is not None:
        q = q.where(PromptSet.project_id == project_id)
    return Prompt.set_id.in_(q)


def _check(name: str, values: Iterable[str], allowed: tuple) -> None:
    for v in values:
        if v not in allowed:
            raise ValueError(f"filter field '{name}': '{v}' is not one of {', '.join(allowed)}")


class _Filter:
    """Shared (de)serialisation: unknown fields are an error naming them; empty fields are left out."""

    @classmethod
    def from_dict(cls, d: Optional[dict[str, Any]]):
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"filter: unknown field(s) {unknown}; known: {sorted(known)}")
        flt = cls(**{k: v for k, v in d.items() if v is not None})
        flt.validate()
        return flt

    ALIASES: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for f in fields(self):  # None from a caller means "no filter", like the empty default
            if getattr(self, f.name) is None and f.default is not None:
                setattr(self, f.name, f.default_factory() if callable(f.default_factory) else f.default)

    @classmethod
    def parse(cls, items: Iterable[str]):
        """The command-line form: `field=value[,value]` items (list fields take comma lists, `_ids` fields
        integers), or whole JSON objects."""
        kinds = {f.name: str(f.type) for f in fields(cls)}
        d: dict[str, Any] = {}
        for item in items:
            item = item.strip()
            if item.startswith("{"):
                try:
                    d.update(json.loads(item))
                except ValueError as e:
                    raise ValueError(f"--filter: not valid JSON ({e})") from None
                continue
            if "=" not in item:
                raise ValueError(f"--filter '{item}' must look like field=value[,value] or be a JSON object")
            k, v = (x.strip() for x in item.split("=", 1))
            k = cls.ALIASES.get(k, k)
            kind = kinds.get(k)
            if kind is None:
                raise ValueError(f"--filter field '{k}' is not one of {sorted(kinds)}")
            try:
                if kind.startswith("list["):
                    vals = [x.strip() for x in v.split(",") if x.strip()]
                    d[k] = [int(x) for x in vals] if "int" in kind else vals
                elif "bool" in kind:
                    d[k] = v.lower() in ("1", "true", "yes")
                elif "int" in kind:
                    d[k] = int(v)
                else:
                    d[k] = v
            except ValueError:
                raise ValueError(f"--filter {k}='{v}' must be {'a list of integers' if 'list' in kind else 'an integer'}"
                                 ) from None
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        defaults = {f.name: f.default for f in fields(self) if not callable(f.default_factory)}
        return {k: v for k, v in asdict(self).items()
                if v not in ([], "", False, None) and not (k in defaults and v == defaults[k])}

    def validate(self) -> None:  # pragma: no cover - overridden
        pass


@dataclass
class PromptFilter(_Filter):
    """A server-side filter over prompts. Empty fields do not filter."""

    set_names: list[str] = field(default_factory=list)
    behaviors: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    mutated: Optional[bool] = None  # True: only mutated prompts; False: only originals
    prompt_ids: list[int] = field(default_factory=list)
    set_kind: Optional[str] = None  # "prompts" leaves jailbreak templates out
    search: str = ""
    project_id: int = 1

    def validate(self) -> None:
        _check("behaviors", self.behaviors, BEHAVIORS)
        _check("splits", self.splits, SPLITS)

    def apply(self, q):
        """q selects from Prompt."""
        q = q.where(Prompt.project_id == self.project_id)
        if self.set_names:
            q = q.where(in_sets(self.set_names, self.project_id))
        if self.set_kind:
            q = q.where(Prompt.set_id.in_(select(PromptSet.id).where(PromptSet.kind == self.set_kind)))
        if self.behaviors:
            q = q.where(Prompt.expected_behavior.in_(self.behaviors))
        if self.splits:
            q = q.where(Prompt.split.in_(self.splits))
        if self.mutations:
            q = q.where(mutation_condition(Prompt.mutation, self.mutations))
        if self.mutated is not None:
            q = q.where(Prompt.mutation.is_not(None) if self.mutated else Prompt.mutation.is_(None))
        if self.prompt_ids:
            q = q.where(Prompt.id.in_(self.prompt_ids))
        if self.search.strip():
            q = q.where(text_search(self.search.strip(), Prompt.text, Prompt.source_id))
        return q


@dataclass
class TraceFilter(_Filter):
    """A server-side filter over traces (queues, browse, bulk actions, exports, Argilla pushes)."""

    set_names: list[str] = field(default_factory=list)
    behaviors: list[str] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)  # UNMUTATED ("none") selects un-mutated prompts
    statuses: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    auto_labels: list[str] = field(default_factory=list)  # "kind=label"
    flagged_only: bool = False  # auto-labels disagree with the expected behaviour or are inconsistent
    annotator_ids: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    queue_ids: list[int] = field(default_factory=list)  # traces in these review queues
    search: str = ""
    project_id: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mutations = normalise_mutations(self.mutations)

    def validate(self) -> None:
        _check("behaviors", self.behaviors, BEHAVIORS)
        _check("statuses", self.statuses, TRACE_STATUSES)
        _check("splits", self.splits, SPLITS)
        for al in self.auto_labels:
            if "=" not in al:
                raise ValueError(f"filter field 'auto_labels': '{al}' must look like kind=label")

    def apply(self, q):
        """q selects from Trace joined to Prompt."""
        q = q.where(Prompt.project_id == self.project_id)
        if self.set_names:
            q = q.where(in_sets(self.set_names, self.project_id))
        if self.behaviors:
            q = q.where(Prompt.expected_behavior.in_(self.behaviors))
        if self.mutations:
            q = q.where(mutation_condition(Prompt.mutation, self.mutations))
        if self.statuses:
            q = q.where(Trace.status.in_(self.statuses))
        if self.splits:
            q = q.where(Prompt.split.in_(self.splits))
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
        if self.queue_ids:
            q = q.where(Trace.id.in_(select(QueueItem.trace_id).where(QueueItem.queue_id.in_(self.queue_ids))))
        if self.search.strip():
            q = q.where(text_search(self.search.strip(), Prompt.text, Trace.reasoning, Trace.response))
        return q


def flagged_expr():
    """True where the deciding judge's label (the `decision` auto-label) contradicts the prompt's expected
    behaviour, or an auto-label marks the trace inconsistent. The comparison judges' `refusal` labels do not
    count: the review queue's priority follows the default judge."""
    lab = func.lower(AutoLabel.label)
    return exists().where(AutoLabel.trace_id == Trace.id, or_(
        and_(AutoLabel.kind.in_((LabelKind.CONSISTENCY, LabelKind.MATCHES_EXPECTED)), lab.in_(INCONSISTENT_LABELS)),
        and_(AutoLabel.kind.in_((LabelKind.DECISION, LabelKind.JUDGE)), or_(
            and_(lab.in_(REFUSE_LABELS), Prompt.expected_behavior != Behavior.REFUSE),
            and_(lab.in_(COMPLY_LABELS), Prompt.expected_behavior != Behavior.COMPLY)))))
