"""Inter-annotator agreement per queue and label: Cohen's kappa for each pair (scikit-learn), Krippendorff's
alpha over everyone (the `krippendorff` package), the disagreement rate, and annotator x annotator tables."""
from __future__ import annotations

from itertools import combinations
from typing import Any, Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.vocabulary import BEHAVIOR_OF_JUDGE_LABEL, LabelKind
from curation.auth import require
from db.models import Annotation, AutoLabel, User

# label -> (how to read it from an annotation, Krippendorff level of measurement)
LABELS = {
    "decision": (lambda a: a.decision, "nominal"),
    "behavior_label": (lambda a: a.behavior_label, "nominal"),
    "reasoning_sound": (lambda a: None if a.reasoning_sound is None else str(a.reasoning_sound).lower(), "nominal"),
    "quality": (lambda a: a.quality, "ordinal"),
}


def _kappa(x: list, y: list) -> Optional[float]:
    from sklearn.metrics import cohen_kappa_score

    if len(x) < 2:
        return None
    if len(set(x) | set(y)) == 1:  # both always gave the same single value: perfect but kappa is undefined
        return 1.0
    return float(cohen_kappa_score([str(v) for v in x], [str(v) for v in y]))


def _alpha(matrix: list[list[Any]], level: str) -> Optional[float]:
    import krippendorff

    values = sorted({v for row in matrix for v in row if v is not None}, key=str)
    if len(values) < 2:
        return 1.0 if values else None
    code = {v: i for i, v in enumerate(values)}
    data = np.array([[np.nan if v is None else float(code[v] if level == "nominal" else v) for v in row]
                     for row in matrix])
    # Only items rated by at least two people carry information about agreement.
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if pairable.sum() == 0:
        return None
    return float(krippendorff.alpha(reliability_data=data[:, pairable], level_of_measurement=level))


def agreement(engine: Engine, user: User | int, queue_id: int, label: str = "decision") -> dict[str, Any]:
    if label not in LABELS:
        raise ValueError(f"label '{label}' is not one of {', '.join(LABELS)}")
    read, level = LABELS[label]
    with Session(engine) as s:
        require(s, user, "agreement")
        rows = s.execute(select(Annotation, User.username).join(User, User.id == Annotation.annotator_id)
                         .where(Annotation.queue_id == queue_id)).all()
    by_item: dict[int, dict[str, Any]] = {}
    for a, name in rows:
        v = read(a)
        if v is not None:
            by_item.setdefault(a.trace_id, {})[name] = v
    annotators = sorted({n for item in by_item.values() for n in item})
    multi = [item for item in by_item.values() if len(item) >= 2]
    disagree = sum(1 for item in multi if len(set(item.values())) > 1)
    pairs, kappa_matrix = [], {a: {b: None for b in annotators} for a in annotators}
    for a, b in combinations(annotators, 2):
        both = [(item[a], item[b]) for item in by_item.values() if a in item and b in item]
        k = _kappa([x for x, _ in both], [y for _, y in both]) if both else None
        agree = (sum(1 for x, y in both if x == y) / len(both)) if both else None
        pairs.append({"a": a, "b": b, "items": len(both), "kappa": k, "agreement": agree})
        kappa_matrix[a][b] = kappa_matrix[b][a] = k
    for a in annotators:
        kappa_matrix[a][a] = 1.0
    values = sorted({v for item in by_item.values() for v in item.values()}, key=str)
    confusion = {}
    for a, b in combinations(annotators, 2):
        m = {x: {y: 0 for y in values} for x in values}
        for item in by_item.values():
            if a in item and b in item:
                m[item[a]][item[b]] += 1
        confusion[f"{a} vs {b}"] = m
    matrix = [[item.get(n) for item in by_item.values()] for n in annotators]
    return {"label": label, "annotators": annotators, "items": len(by_item), "items_multi": len(multi),
            "disagreement_rate": (disagree / len(multi)) if multi else None,
            "alpha": _alpha(matrix, level) if annotators else None, "pairs": pairs, "kappa_matrix": kappa_matrix,
            "values": values, "confusion": confusion,
            "judges": judges_vs_people(engine, by_item) if label == "behavior_label" else []}


def consensus(item: dict[str, Any]) -> Optional[Any]:
    """The people's label on an item: the most common one; None on a tie."""
    counts: dict[Any, int] = {}
    for v in item.values():
        counts[v] = counts.get(v, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    if not top or (len(top) > 1 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def judges_vs_people(engine: Engine, by_item: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each refusal judge as one more annotator: its behaviour label on the queue's traces (its `refusal`
    auto-label) against the people's consensus, as Cohen's kappa and raw agreement."""
    gold = {tid: c for tid, item in by_item.items() if (c := consensus(item)) is not None}
    if not gold:
        return []
    with Session(engine) as s:
        rows = s.execute(select(AutoLabel.trace_id, AutoLabel.agent, AutoLabel.label).where(
            AutoLabel.kind == LabelKind.REFUSAL, AutoLabel.trace_id.in_(list(gold)))).all()
    by_judge: dict[str, dict[int, str]] = {}
    for tid, agent, lab in rows:
        if lab in BEHAVIOR_OF_JUDGE_LABEL:
            by_judge.setdefault(agent, {})[tid] = BEHAVIOR_OF_JUDGE_LABEL[lab]
    out = []
    for agent, said in sorted(by_judge.items()):
        both = [(gold[t], said[t]) for t in said]
        out.append({"judge": agent, "items": len(both), "kappa": _kappa([g for g, _ in both], [j for _, j in both]),
                    "agreement": sum(g == j for g, j in both) / len(both) if both else None})
    return out
