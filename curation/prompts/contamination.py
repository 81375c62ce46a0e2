"""Contamination check: do an export's training prompts overlap the prompts held out for evaluation?

Three ways to overlap an `eval`-split prompt:
- exact: the same text after normalisation (case, punctuation and whitespace folded);
- near: a rapidfuzz similarity ratio at or above the threshold on that normalised text;
- mutation: the two prompts share a lineage (one is a mutation of the other, or both of the same root), because a
  slang or role-play rewrite of an eval prompt is the same test item in other words.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db.models import Prompt

DEFAULT_THRESHOLD = 90.0
_NON_WORD = re.compile(r"[^\w\s]+")
_WS = re.compile(r"\s+")
_CHUNK = 2048  # training prompts per similarity block: bounds the score matrix to CHUNK x eval prompts


def comparison_key(text: str) -> str:
    """Fold what does not change the test item: Unicode forms, case, punctuation, whitespace."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", _NON_WORD.sub(" ", text)).strip()


@dataclass(frozen=True)
class Overlap:
    prompt_id: int
    eval_prompt_id: int
    how: str  # exact | near | mutation
    score: float


@dataclass
class ContaminationReport:
    checked_prompts: int
    eval_prompts: int
    threshold: float
    overlaps: list[Overlap] = field(default_factory=list)

    @property
    def contaminated_prompt_ids(self) -> set[int]:
        return {o.prompt_id for o in self.overlaps}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.overlaps:
            out[o.how] = out.get(o.how, 0) + 1
        return out

    def summary(self) -> str:
        if not self.overlaps:
            return (f"no overlap between {self.checked_prompts} training prompts and {self.eval_prompts} eval "
                    f"prompts (near-duplicate threshold {self.threshold:g})")
        by = ", ".join(f"{n} {how}" for how, n in sorted(self.counts().items()))
        return (f"{len(self.contaminated_prompt_ids)} of {self.checked_prompts} training prompts overlap eval prompts "
                f"({by}); e.g. prompt {self.overlaps[0].prompt_id} ~ eval prompt {self.overlaps[0].eval_prompt_id}")

    def to_dict(self, limit: int = 200) -> dict:
        return {"checked_prompts": self.checked_prompts, "eval_prompts": self.eval_prompts,
                "threshold": self.threshold, "counts": self.counts(),
                "contaminated_prompts": len(self.contaminated_prompt_ids),
                "overlaps": [asdict(o) for o in self.overlaps[:limit]]}


def _roots(parents: dict[int, int], ids) -> dict[int, int]:
    """Lineage root of each prompt id (cycles, which the data should never hold, stop the walk)."""
    out = {}
    for pid in ids:
        seen, cur = {pid}, pid
        while cur in parents and parents[cur] not in seen:
            cur = parents[cur]
            seen.add(cur)
        out[pid] = cur
    return out


def check_contamination(engine: Engine, prompts: dict[int, str], *, project_id: int = 1,
                        threshold: float = DEFAULT_THRESHOLD) -> ContaminationReport:
    """Compare training prompts ({id: text}) with every eval-split prompt of the project."""
    with Session(engine) as s:
        evals = s.execute(select(Prompt.id, Prompt.text)
                          .where(Prompt.project_id == project_id, Prompt.split == "eval")).all()
        parents = dict(s.execute(select(Prompt.id, Prompt.parent_prompt_id)
                                 .where(Prompt.project_id == project_id, Prompt.parent_prompt_id.is_not(None))).all())
    report = ContaminationReport(checked_prompts=len(prompts), eval_prompts=len(evals), threshold=threshold)
    if not evals or not prompts:
        return report
    eval_ids = [e[0] for e in evals]
    eval_keys = [comparison_key(e[1]) for e in evals]
    found: dict[int, Overlap] = {}

    # Lineage: a shared root means one is (a mutation of) the other.
    eval_by_root: dict[int, int] = {}
    for eid, root in _roots(parents, eval_ids).items():
        eval_by_root.setdefault(root, eid)
    for pid, root in _roots(parents, prompts).items():
        if root in eval_by_root:
            eid = eval_by_root[root]
            found[pid] = Overlap(pid, eid, "exact" if pid == eid else "mutation", 100.0)

    # Text: exact keys through a dict, near-duplicates through rapidfuzz in blocks, each unique key once.
    key_to_eval: dict[str, int] = {}
    for eid, key in zip(eval_ids, eval_keys):
        key_to_eval.setdefault(key, eid)
    by_key: dict[str, list[int]] = {}
    for pid in sorted(prompts):
        if pid not in found:
            by_key.setdefault(comparison_key(prompts[pid]), []).append(pid)
    rest = []
    for key, pids in by_key.items():
        if key in key_to_eval:
            for pid in pids:
                found[pid] = Overlap(pid, key_to_eval[key], "exact", 100.0)
        else:
            rest.append(key)
    if rest:
        _near(rest, by_key, eval_ids, eval_keys, threshold, found)
    report.overlaps = sorted(found.values(), key=lambda o: (o.prompt_id, o.eval_prompt_id))
    return report


def _near(keys, by_key, eval_ids, eval_keys, threshold, found) -> None:
    import numpy as np
    from rapidfuzz import fuzz, process

    for start in range(0, len(keys), _CHUNK):
        block = keys[start:start + _CHUNK]
        scores = process.cdist(block, eval_keys, scorer=fuzz.ratio, score_cutoff=threshold, dtype=np.uint8,
                               workers=-1)
        rows, cols = np.nonzero(scores)
        best: dict[int, tuple[int, int]] = {}
        for r, c in zip(rows.tolist(), cols.tolist()):
            sc = int(scores[r, c])
            if r not in best or sc > best[r][0]:
                best[r] = (sc, c)
        for r, (sc, c) in best.items():
            for pid in by_key[block[r]]:
                found[pid] = Overlap(pid, eval_ids[c], "near", float(sc))
