"""The judges by name, and the default one.

`learned` is the default everywhere a refusal is decided (generation's auto-labels, the review queue's priority,
evaluation and the loop): it was measured against the prefix match and the rule judge on held-out responses
(docs/results/judges.md). `llm` needs a backend and is the strong option on a GPU.
"""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy.engine import Engine

from curation.judges import learned
from curation.judges.base import Judge
from curation.judges.measure import measure

JUDGE_NAMES = ("learned", "rule", "prefix", "gcg", "llm")
OFFLINE_JUDGES = JUDGE_NAMES[:-1]  # the ones that need no model
DEFAULT_JUDGE = "learned"
LABEL_JUDGES = ("prefix", "rule", "learned")  # written as refusal auto-labels on every trace, for comparison


def get_judge(name: str = DEFAULT_JUDGE, *, engine: Optional[Engine] = None, backend=None,
              version: Optional[int] = None, template: Optional[str] = None) -> Judge:
    """A judge by name. `learned` needs the database (its versions live there); `llm` needs a backend."""
    if name == "learned":
        if engine is None:
            raise ValueError("the learned judge needs a database")
        return learned.load(engine, version)
    if name == "rule":
        from curation.judges.rule import RuleJudge

        return RuleJudge()
    if name == "prefix":
        from curation.judges.strmatch import PrefixJudge

        return PrefixJudge()
    if name == "gcg":
        from curation.judges.strmatch import SubstringJudge

        return SubstringJudge()
    if name == "llm":
        if backend is None:
            raise ValueError("the llm judge needs a model and backend (--judge-model / --judge-backend)")
        from curation.judges.llm import LLMJudge

        return LLMJudge(backend, template=template)
    raise ValueError(f"judge '{name}' is not one of {', '.join(JUDGE_NAMES)}")


def parse_ref(ref: str) -> tuple[str, Optional[int]]:
    """"learned@v3" -> ("learned", 3); "rule" -> ("rule", None)."""
    name, _, rest = ref.partition("@v")
    digits = rest.split("/")[0]
    return name, int(digits) if digits.isdigit() else None


def measured(engine: Engine, ref: str) -> Optional[dict[str, Any]]:
    """A judge's measured agreement on the shipped held-out responses (the learned judge's card, or measured
    now for a rule-based judge); None for the LLM judge, whose figures depend on its model."""
    name, version = parse_ref(ref)
    if name == "llm" or name not in JUDGE_NAMES:
        return None
    if name == "learned":
        row = learned.version_row(engine, version)
        return (row.card or {}).get("heldout") if row else None
    held = learned.shipped_rows("heldout")
    return measure(get_judge(name), held) if held else None


def judge_cards(engine: Engine) -> list[dict[str, Any]]:
    """One row per judge (every learned version): what it learned from and how it measured."""
    rows = []
    for v in learned.list_versions(engine):
        m, on = v.get("heldout") or {}, v.get("trained_on") or {}
        rows.append({"judge": v["ref"], "accuracy": m.get("accuracy"), "refused_recall": m.get("refused_recall"),
                     "kappa": m.get("kappa"), "shipped_rows": sum((on.get("shipped") or {}).values()),
                     "reviewer_labels": sum((on.get("reviewers") or {}).values()), "created_at": v["created_at"]})
    for name in ("rule", "prefix", "gcg"):
        j = get_judge(name)
        m = measured(engine, j.ref) or {}
        rows.append({"judge": j.ref, "accuracy": m.get("accuracy"), "refused_recall": m.get("refused_recall"),
                     "kappa": m.get("kappa"), "shipped_rows": 0, "reviewer_labels": 0, "created_at": None})
    return rows
