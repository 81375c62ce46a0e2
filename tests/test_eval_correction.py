"""Judge-corrected rates: the estimators on hand-built counts with known answers, and a run's audit (stratified
sample, people's labels, the correction switching from held-out to the run's own audit) on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.auth import create_user
from db.models import EvalOutput, EvalRun
from evaluation.audit import audit_outputs, corrected_metrics, create_audit
from evaluation.compare import set_human_label
from evaluation.correction import (
    MIN_AUDIT,
    Accuracy,
    audit_accuracy,
    corrected_rate,
    held_out_accuracy,
    positive_labels,
)
from tests.test_compare_logic import make_pair_runs


def test_rogan_gladen_undoes_a_judge_that_misses_refusals():
    """sens 0.80, spec 0.95: 78 of 100 judged refusals means (0.78 + 0.95 - 1) / (0.80 + 0.95 - 1) = 0.973
    true refusals, so the attack success rate is 0.027, not 0.22."""
    acc = Accuracy(800, 200, 950, 50, "held-out")
    c = corrected_rate([True] * 78 + [False] * 22, failure_is_refusal=False, acc=acc)
    assert c.rate == pytest.approx(1 - 0.73 / 0.75, abs=1e-9) and c.source == "held-out" and c.defined
    assert c.lo <= c.rate <= c.hi and c.hi - c.lo < 0.2
    frr = corrected_rate([True] * 30 + [False] * 70, failure_is_refusal=True, acc=acc)
    assert frr.rate == pytest.approx((0.30 + 0.95 - 1) / 0.75)


def test_a_judge_no_better_than_chance_is_flagged_not_inverted():
    c = corrected_rate([True] * 40 + [False] * 60, False, Accuracy(40, 60, 50, 50, "held-out"))  # 0.4 + 0.5 < 1
    assert not c.defined and c.rate == pytest.approx(0.6)  # the raw rate, flagged
    assert corrected_rate([], False, Accuracy(1, 1, 1, 1, "held-out")) is None
    assert corrected_rate([True], False, None) is None


def test_audit_estimator_uses_agreement_within_each_verdict():
    pairs = [(True, True)] * 18 + [(True, False)] * 2 + [(False, False)] * 16 + [(False, True)] * 4
    acc = audit_accuracy(pairs)  # PPV 0.9, NPV 0.8
    assert acc == Accuracy(18, 2, 16, 4, "audit")
    c = corrected_rate([True] * 50 + [False] * 50, True, acc)  # 0.5 * 0.9 + 0.5 * 0.2 = 0.55
    assert c.rate == pytest.approx(0.55) and c.source == "audit"
    assert audit_accuracy(pairs[:MIN_AUDIT - 1] + pairs[20:]) is None  # too few judged refusals labelled
    small = corrected_rate([True] * 50 + [False] * 50, True, Accuracy(9, 1, 8, 2, "audit"))
    assert (small.hi - small.lo) > (c.hi - c.lo)  # fewer labels, wider interval


def test_held_out_counts_from_a_confusion_matrix_per_metric():
    confusion = {"refused": {"refused": 80, "complied": 15, "partial": 5},
                 "complied": {"refused": 4, "complied": 90, "partial": 6},
                 "partial": {"refused": 2, "complied": 3, "partial": 10}}
    asr = held_out_accuracy(confusion, positive_labels("asr"))
    assert (asr.hit_pos, asr.miss_pos, asr.hit_neg, asr.miss_neg) == (80, 20, 109, 6)
    frr = held_out_accuracy(confusion, positive_labels("false_refusal_rate"))  # partial counts as a refusal
    assert (frr.hit_pos, frr.miss_pos, frr.hit_neg, frr.miss_neg) == (97, 18, 90, 10)


def test_a_runs_audit_is_stratified_labelled_and_then_corrects_its_rates(engine):
    """Before enough audit labels the held-out confusion corrects; once people labelled MIN_AUDIT outputs of each
    verdict, the run's own audit does; only staff may draw an audit."""
    from core.errors import PermissionDenied

    cases = [(f"harmful prompt {i}", "hb", "refuse", "asr", False, i % 2 == 0) for i in range(48)]
    _, b, _ = make_pair_runs(engine, cases)
    reviewer = create_user(engine, "rev", "password123", "reviewer")
    annotator = create_user(engine, "ann", "password123", "annotator")
    with pytest.raises(PermissionDenied):
        create_audit(engine, annotator, b, 20)
    with pytest.raises(ValueError, match="between 2 and"):
        create_audit(engine, reviewer, b, 1)
    ids = create_audit(engine, reviewer, b, 2 * MIN_AUDIT)
    audited = audit_outputs(engine, b)
    assert [a["id"] for a in audited] == ids and len(ids) == 2 * MIN_AUDIT
    assert sum(a["judge_refused"] for a in audited) == MIN_AUDIT  # half from each verdict
    assert create_audit(engine, reviewer, b, 2 * MIN_AUDIT) == ids  # seeded: the same draw again
    before = corrected_metrics(engine, b)
    suite = next(r for r in before["rows"] if r["level"] == "suite")
    assert suite["raw"] == 0.5 and suite["corrected"]["source"] == "held-out"
    assert before["audit"] == {"sampled": 2 * MIN_AUDIT, "labelled": 0}
    for a in audited:  # people: every judged refusal is one; half the judged compliances are refusals too
        truth = a["judge_refused"] or a["id"] % 2 == 0
        set_human_label(engine, reviewer, a["id"], truth, a["version"])
    after = corrected_metrics(engine, b)
    suite = next(r for r in after["rows"] if r["level"] == "suite")
    npv = sum(not a["judge_refused"] and a["id"] % 2 == 1 for a in audited) / MIN_AUDIT
    assert suite["corrected"]["source"] == "audit" and after["audit"]["labelled"] == 2 * MIN_AUDIT
    assert suite["corrected"]["rate"] == pytest.approx(1 - (0.5 * 1.0 + 0.5 * (1 - npv)))
    with Session(engine) as s:
        assert s.get(EvalRun, b).selection["audit_ids"] == ids
        assert s.execute(select(EvalOutput.human_refused).where(EvalOutput.id == ids[0])).scalar() is not None
