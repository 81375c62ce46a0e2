"""How well a judge agrees with gold labels: accuracy, per-class precision and recall, Cohen's kappa and the
confusion matrix (rows gold, columns judged)."""
from __future__ import annotations

from typing import Any, Sequence

from core.vocabulary import JUDGE_LABELS, JudgeLabel


def scores(gold: Sequence[str], judged: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score

    n = len(gold)
    if n == 0:
        return {"n": 0, "accuracy": None, "kappa": None, "per_class": {}, "confusion": {}}
    labels = [lab for lab in JUDGE_LABELS if lab in set(gold) | set(judged)]
    confusion = {g: {j: 0 for j in labels} for g in labels}
    for g, j in zip(gold, judged):
        confusion[g][j] += 1
    per_class = {}
    for lab in labels:
        tp = confusion[lab][lab]
        said = sum(confusion[g][lab] for g in labels)
        truly = sum(confusion[lab].values())
        per_class[lab] = {"precision": tp / said if said else None, "recall": tp / truly if truly else None,
                          "support": truly}
    agree = sum(g == j for g, j in zip(gold, judged))
    kappa = 1.0 if len(set(gold) | set(judged)) == 1 else float(cohen_kappa_score(list(gold), list(judged)))
    return {"n": n, "accuracy": agree / n, "kappa": kappa, "per_class": per_class, "confusion": confusion,
            "refused_recall": per_class.get(JudgeLabel.REFUSED, {}).get("recall")}


def measure(judge, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Judge labelled rows ({prompt, response, label}) and score the judge against the labels."""
    judged = judge.judge([(r.get("prompt") or "", r.get("response") or "") for r in rows])
    return {"judge": judge.ref, **scores([r["label"] for r in rows], [j.label for j in judged])}
