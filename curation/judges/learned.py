"""The learned judge: a linear classifier over word and character n-grams of the response, the n-grams of its
opening sentences (where a stance usually sits), and the rule judge's signals. It runs on a CPU in well under a
millisecond per response and learns from two sources, kept apart in its card:

1. the labelled set the project ships (`data/responses.jsonl`, see `data/GUIDE.md`): its `train` rows only;
2. every human behaviour label from review and adjudication, when someone retrains it (`rational judge train`).

Each fit is stored as a `JudgeVersion` row of plain JSON (vocabularies and weights); version 1 is the shipped set
alone, fitted on first use. The newest version is the one that judges.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.vocabulary import FINAL_STATUSES, JUDGE_LABEL_OF_BEHAVIOR, JUDGE_LABELS, JudgeLabel, Role
from curation.auth import require
from curation.judges.base import Judgement
from curation.judges.measure import measure
from curation.judges.rule import _clean, _sentences, judge_text, signals
from db.engine import write_engine
from db.models import Annotation, AuditEvent, JudgeVersion, Prompt, Trace, User

NAME = "learned"
SHIPPED = Path(__file__).parent / "data" / "responses.jsonl"
PARAMS = {"C": 4.0, "max_chars": 1500, "word_features": 8000, "char_features": 12000, "head_features": 4000}
_VECTORIZERS = {  # name -> TfidfVectorizer arguments
    "word": {"ngram_range": (1, 2), "sublinear_tf": True},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "min_df": 2},
    "head": {"ngram_range": (1, 3), "sublinear_tf": True},
}


def shipped_rows(split: Optional[str] = "train") -> list[dict[str, Any]]:
    """The shipped labelled responses (one split, or all with None)."""
    rows = [json.loads(line) for line in SHIPPED.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]


def reviewer_rows(engine: Engine) -> list[dict[str, Any]]:
    """The behaviour labels that decided a trace, one per trace, on the text judged (the edit where the reply was
    edited): only traces people approved or rejected (consensus or adjudication, never the automatic filter or an
    undecided trace), only labels of active accounts, and only a label that no one person could set alone: the
    adjudicator's chosen annotation, a reviewer's or admin's label, or two or more annotators agreeing with no
    active one disagreeing. So an annotator alone cannot move a judge."""
    q = (select(Annotation.id, Annotation.trace_id, Annotation.behavior_label, Annotation.edited_response,
                User.role, Trace.response, Trace.meta, Prompt.text)
         .join(Trace, Trace.id == Annotation.trace_id).join(Prompt, Prompt.id == Trace.prompt_id)
         .join(User, User.id == Annotation.annotator_id)
         .where(Annotation.behavior_label.is_not(None), User.is_active.is_(True),
                Trace.status.in_(FINAL_STATUSES), Trace.decided_how.in_(("consensus", "adjudication")))
         .order_by(Annotation.id))
    with Session(engine) as s:
        rows = s.execute(q).all()
    by_trace: dict[int, list] = {}
    for r in rows:
        if r.behavior_label in JUDGE_LABEL_OF_BEHAVIOR:
            by_trace.setdefault(r.trace_id, []).append(r)
    out = []
    for anns in by_trace.values():
        final = (anns[0].meta or {}).get("final_annotation_id")
        chosen = [a for a in anns if a.id == final] if final is not None else []
        staff = [a for a in anns if a.role in (Role.REVIEWER, Role.ADMIN)]
        labels = {a.behavior_label for a in anns}
        pick = (chosen or staff[-1:] or (anns[-1:] if len(anns) >= 2 and len(labels) == 1 else []))
        for a in pick:
            out.append({"prompt": a.text, "response": a.edited_response or a.response or "",
                        "label": JUDGE_LABEL_OF_BEHAVIOR[a.behavior_label], "source": "reviewers"})
    return out


def _head(text: str) -> str:
    return " ".join(_sentences(_clean(text))[:2])


def _signal_row(prompt: str, response: str) -> list[float]:
    label, score, _why = judge_text(response, prompt)
    return ([float(label == lab) for lab in JUDGE_LABELS] + [score]
            + [min(v, 3.0) / 3.0 for v in signals(response, prompt).values()])


class _Features:
    """Turns (prompt, response) pairs into the classifier's input; fitted once, then stored as JSON."""

    def __init__(self, vectorizers: dict[str, Any]):
        self.vectorizers = vectorizers

    @classmethod
    def fit(cls, items: Sequence[tuple[str, str]], params: dict) -> "_Features":
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [r[: params["max_chars"]] for _p, r in items]
        vecs = {}
        for name, args in _VECTORIZERS.items():
            v = TfidfVectorizer(max_features=params[f"{name}_features"], **args)
            v.fit([_head(t) for t in texts] if name == "head" else texts)
            vecs[name] = v
        return cls(vecs)

    def transform(self, items: Sequence[tuple[str, str]], params: dict):
        from scipy.sparse import csr_matrix, hstack

        texts = [r[: params["max_chars"]] for _p, r in items]
        blocks = [self.vectorizers[name].transform([_head(t) for t in texts] if name == "head" else texts)
                  for name in _VECTORIZERS]
        blocks.append(csr_matrix(np.array([_signal_row(p, r) for p, r in items], dtype=float)))
        return hstack(blocks).tocsr()

    def to_json(self) -> dict:
        return {name: {"vocabulary": {k: int(i) for k, i in v.vocabulary_.items()},
                       "idf": [round(float(x), 6) for x in v.idf_]} for name, v in self.vectorizers.items()}

    @classmethod
    def from_json(cls, data: dict) -> "_Features":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vecs = {}
        for name, args in _VECTORIZERS.items():
            v = TfidfVectorizer(vocabulary=data[name]["vocabulary"], **{k: a for k, a in args.items()
                                                                       if k != "min_df"})
            v.idf_ = np.array(data[name]["idf"])
            vecs[name] = v
        return cls(vecs)


def fit(rows: Sequence[dict[str, Any]], params: dict | None = None) -> dict[str, Any]:
    """Fit on labelled rows ({prompt, response, label}); returns the model as JSON-able data."""
    from sklearn.linear_model import LogisticRegression

    params = {**PARAMS, **(params or {})}
    items = [(r.get("prompt") or "", r.get("response") or "") for r in rows]
    labels = [r["label"] for r in rows]
    unknown = sorted(set(labels) - set(JUDGE_LABELS))
    if unknown:
        raise ValueError(f"labels {unknown} are not {', '.join(JUDGE_LABELS)}")
    feats = _Features.fit(items, params)
    lr = LogisticRegression(C=params["C"], max_iter=3000, class_weight="balanced")
    lr.fit(feats.transform(items, params), labels)
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # binary LR keeps one row; store both so prediction is one softmax
        coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return {"format": 1, "params": params, "features": feats.to_json(), "classes": [str(c) for c in lr.classes_],
            "coef": [[round(float(x), 6) for x in row] for row in coef],
            "intercept": [round(float(x), 6) for x in intercept]}


class LearnedJudge:
    name = NAME

    def __init__(self, model: dict[str, Any], version: int):
        self.version = version
        self.params = model["params"]
        self.features = _Features.from_json(model["features"])
        self.classes = model["classes"]
        self.coef = np.array(model["coef"])
        self.intercept = np.array(model["intercept"])

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    def probabilities(self, items: Sequence[tuple[str, str]]) -> np.ndarray:
        if not items:
            return np.zeros((0, len(self.classes)))
        z = self.features.transform(items, self.params) @ self.coef.T + self.intercept
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def judge(self, items: Sequence[tuple[str, str]]) -> list[Judgement]:
        probs = self.probabilities(items)
        refused = self.classes.index(JudgeLabel.REFUSED) if JudgeLabel.REFUSED in self.classes else None
        out = []
        for p in probs:
            label = self.classes[int(p.argmax())]
            out.append(Judgement(label, round(float(p[refused]) if refused is not None else 0.0, 4), self.ref,
                                 f"p({label}) = {p.max():.2f}"))
        return out


_cache: dict[tuple[str, int], LearnedJudge] = {}
_lock = threading.Lock()


def current_version(engine: Engine) -> JudgeVersion:
    """The newest stored version; version 1 (the shipped set alone) is fitted and stored on first use."""
    with Session(engine, expire_on_commit=False) as s:
        row = s.execute(select(JudgeVersion).where(JudgeVersion.name == NAME)
                        .order_by(JudgeVersion.version.desc())).scalars().first()
    if row is not None:
        return row
    with _lock:
        rows = shipped_rows("train")
        return _store(engine, fit(rows), rows, [], created_by=None)


def version_row(engine: Engine, version: Optional[int] = None) -> Optional[JudgeVersion]:
    """A stored version (the newest, fitting version 1 on first use, when `version` is None)."""
    if version is None:
        return current_version(engine)
    with Session(engine, expire_on_commit=False) as s:
        return s.execute(select(JudgeVersion).where(JudgeVersion.name == NAME, JudgeVersion.version == version)
                         ).scalars().first()


def list_versions(engine: Engine) -> list[dict[str, Any]]:
    """Every version with its card (what it learned from, how it measured on the held-out responses)."""
    current_version(engine)
    with Session(engine) as s:
        rows = s.execute(select(JudgeVersion).where(JudgeVersion.name == NAME)
                         .order_by(JudgeVersion.version.desc())).scalars().all()
        return [{"ref": f"{NAME}@v{r.version}", "version": r.version, "created_at": r.created_at,
                 "created_by": r.created_by, **(r.card or {})} for r in rows]


def load(engine: Engine, version: Optional[int] = None) -> LearnedJudge:
    """The learned judge at `version` (default: the newest), cached per database."""
    row = version_row(engine, version)
    if row is None:
        raise ValueError(f"learned judge version {version} does not exist")
    key = (str(engine.url), row.version)
    with _lock:
        if key not in _cache:
            _cache[key] = LearnedJudge(row.model, row.version)
        return _cache[key]


def train(engine: Engine, user: User | int | None) -> JudgeVersion:
    """Refit on the shipped set plus every reviewer label so far: a new version, which judges from now on."""
    if user is not None:
        with Session(engine) as s:
            require(s, user, "train_judges")
    current_version(engine)  # version 1 is always the shipped set alone
    shipped, reviewers = shipped_rows("train"), reviewer_rows(engine)
    if not reviewers:
        raise ValueError("no reviewer behaviour labels yet: label traces in Review (the `d` key) first")
    return _store(engine, fit(shipped + reviewers), shipped, reviewers,
                  created_by=user if isinstance(user, int) else getattr(user, "id", None))


def _count(rows: Sequence[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["label"]] = out.get(r["label"], 0) + 1
    return out


def _store(engine: Engine, model: dict, shipped: list[dict], reviewers: list[dict], *,
           created_by: Optional[int]) -> JudgeVersion:
    judge = LearnedJudge(model, 0)
    held = shipped_rows("heldout")
    card = {"trained_on": {"shipped": _count(shipped), "reviewers": _count(reviewers)},
            "heldout": measure(judge, held) if held else None}
    with Session(write_engine(engine), expire_on_commit=False) as s:
        latest = s.execute(select(func.max(JudgeVersion.version)).where(JudgeVersion.name == NAME)).scalar() or 0
        if latest and not reviewers and created_by is None:
            # Another process stored the shipped fit first (write_engine serialises writers).
            return s.execute(select(JudgeVersion).where(JudgeVersion.name == NAME,
                                                        JudgeVersion.version == latest)).scalars().one()
        row = JudgeVersion(name=NAME, version=latest + 1, model=model, card=card, created_by=created_by)
        s.add(row)
        s.flush()
        if created_by is not None:
            s.add(AuditEvent(actor_id=created_by, entity="judge", entity_id=row.id, action="train",
                             after={"version": row.version, "trained_on": card["trained_on"]}))
        try:
            s.commit()
        except IntegrityError:  # two writers raced for the same version number on PostgreSQL
            s.rollback()
            return current_version(engine)
        return row
