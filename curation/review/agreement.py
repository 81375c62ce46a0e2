"""Inter-annotator agreement per queue and label: Cohen's kappa for each pair (scikit-learn), Krippendorff's
alpha over everyone (the `krippendorff` package), the disagreement rate, and annotator x annotator tables."""
from __future__ import annotations

from itertools import combinations
from typing import Any, Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.auth import require
from db.models import Annotation, User

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
            "values": values, "confusion": confusion}
