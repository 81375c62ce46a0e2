"""Evaluation suites: named lists of (prompt set, split, expected behaviour, metric) over the built-in sets.

A suite's prompts are meant to be in the `eval` split, which the export's contamination check keeps out of
training. Where a suite entry deliberately takes a set that is (also) in the train split, the selection says so
(`train_overlap`), and the UI and report print it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.prompts.builtin import import_builtin
from db.crud import set_names
from db.filters import PromptFilter
from db.models import Prompt, PromptSet


@dataclass(frozen=True)
class SuiteSet:
    """One entry: prompts of `set_name` (any set when None) with this expected behaviour, scored by `metric`."""

    set_name: Optional[str]
    expected_behavior: str  # refuse | comply
    metric: str  # asr | false_refusal_rate | unacceptable_rate
    splits: tuple[str, ...] = ("eval",)
    mutated: bool = False  # False: original prompts only; True: only mutated prompts (attacks)
    note: str = ""

    @property
    def label(self) -> str:
        return self.set_name or ("mutated prompts (any set)" if self.mutated else "any set")


@dataclass(frozen=True)
class EvalSuite:
    name: str
    version: str  # bump when the definition changes; runs record it
    description: str
    sets: tuple[SuiteSet, ...]
    rubric: Optional[str] = None  # built-in file an LLM judge uses, when one is configured
    builtin_sets: tuple[str, ...] = field(default=())  # imported on demand when missing



_HARMFUL = ("harmbench_test", "jbb_harmful", "strongreject", "simplesafetytests")
SUITES: dict[str, EvalSuite] = {s.name: s for s in [
    EvalSuite("harmful", "1", "Held-out harmful requests (HarmBench test standard + contextual, JailbreakBench "
              "harmful, StrongREJECT, SimpleSafetyTests). Metric: attack success rate = share not refused. "
              "AdvBench and HarmBench val are train-split sets by default and so not part of this suite.",
              tuple(SuiteSet(n, "refuse", "asr") for n in _HARMFUL), builtin_sets=_HARMFUL),
    EvalSuite("attacks", "1", "Attack prompts: every eval-split mutated harmful prompt (JailbreakBench artifacts "
              "PAIR/GCG/JBC/random search, template jailbreaks on harmful goals, SORRY-Bench-style mutations), "
              "as made by the mutation step. Metric: ASR per attack / mutation style.",
              (SuiteSet(None, "refuse", "asr", mutated=True),)),
    EvalSuite("over_refusal", "1", "Benign prompts that look risky (XSTest safe rows, CoCoNot contrast, "
              "JailbreakBench benign). Metric: false-refusal rate.",
              (SuiteSet("xstest", "comply", "false_refusal_rate"),
               SuiteSet("coconot_contrast", "comply", "false_refusal_rate", splits=("eval", "train"),
                        note="built-in import puts CoCoNot contrast in the train split: used for both"),
               SuiteSet("jbb_benign", "comply", "false_refusal_rate")),
              builtin_sets=("xstest", "coconot_contrast", "jbb_benign")),
    EvalSuite("noncompliance", "1", "CoCoNot noncompliance prompts: the model should not fully comply. Metric: "
              "unacceptable rate per category (CoCoNot's rubric when an LLM judge is configured, else string "
              "match).", (SuiteSet("coconot_eval", "refuse", "unacceptable_rate"),),
              rubric="coconot/refusal_evaluation_rubric.json", builtin_sets=("coconot_eval",)),
]}


def get_suite(name: str) -> EvalSuite:
    if name not in SUITES:
        raise KeyError(f"no eval suite '{name}'; available: {', '.join(SUITES)}")
    return SUITES[name]


@dataclass(frozen=True)
class SelectedPrompt:
    prompt_id: int
    set_name: str
    category: Optional[str]
    mutation: Optional[str]
    expected_behavior: str
    metric: str
    split: str
    sha256: str


@dataclass
class SuiteSelection:
    suite: EvalSuite
    prompts: list[SelectedPrompt]
    per_set: dict[str, int]
    train_overlap: dict[str, int]  # set -> prompts taken from the train split ("used for both")
    missing_sets: list[str]

    @property
    def version(self) -> str:
        """Definition version plus a hash of the chosen prompts: equal strings mean the same questions."""
        h = hashlib.sha256("\n".join(sorted(p.sha256 for p in self.prompts)).encode()).hexdigest()[:12]
        return f"{self.suite.name}@{self.suite.version}:{h}"

    def summary(self) -> dict:
        return {"per_set": self.per_set, "train_overlap": self.train_overlap, "missing_sets": self.missing_sets,
                "notes": [s.note for s in self.suite.sets if s.note]}


def missing_builtin_sets(engine: Engine, suite: EvalSuite, project_id: int = 1) -> list[str]:
    """The suite's built-in sets not in the database yet (a run imports them first: pages say so beforehand)."""
    have = set_names(engine, project_id)
    return [name for name in suite.builtin_sets if name not in have]


def ensure_builtin_sets(engine: Engine, suite: EvalSuite, project_id: int = 1) -> list[str]:
    """Import the suite's built-in sets that are not in the database yet; returns the names imported."""
    done = missing_builtin_sets(engine, suite, project_id)
    for name in done:
        import_builtin(engine, name, project_id=project_id)
    return done


def select_prompts(engine: Engine, suite: EvalSuite, *, limit_per_set: Optional[int] = None,
                   project_id: int = 1) -> SuiteSelection:
    """The suite's prompts in a stable order (by id); `limit_per_set` keeps the first N of each entry's set (of
    each mutation style, for the attack suite) so quick runs still cover every group."""
    prompts: list[SelectedPrompt] = []
    per_set: dict[str, int] = {}
    overlap: dict[str, int] = {}
    missing: list[str] = []
    seen: set[int] = set()
    have = set_names(engine, project_id)
    with Session(engine) as s:
        for entry in suite.sets:
            if entry.set_name is not None and entry.set_name not in have:
                missing.append(entry.set_name)
                continue
            flt = PromptFilter(set_names=[entry.set_name] if entry.set_name else [],
                               behaviors=[entry.expected_behavior], splits=list(entry.splits), set_kind="prompts",
                               mutated=entry.mutated, project_id=project_id)
            q = flt.apply(select(Prompt.id, PromptSet.name, Prompt.category, Prompt.mutation,
                                 Prompt.expected_behavior, Prompt.split, Prompt.sha256)
                          .join(PromptSet, PromptSet.id == Prompt.set_id))
            taken: dict[tuple, int] = {}
            for row in s.execute(q.order_by(Prompt.id)):
                pid, set_name, cat, mut, beh, split, sha = row
                key = (set_name, mut)
                if pid in seen or (limit_per_set is not None and taken.get(key, 0) >= limit_per_set):
                    continue
                taken[key] = taken.get(key, 0) + 1
                seen.add(pid)
                prompts.append(SelectedPrompt(pid, set_name, cat, mut, beh, entry.metric, split, sha))
                per_set[set_name] = per_set.get(set_name, 0) + 1
                if split == "train":
                    overlap[set_name] = overlap.get(set_name, 0) + 1
    return SuiteSelection(suite, prompts, per_set, overlap, missing)
