"""Two eval runs side by side: comparability, metric deltas, per-prompt pairs (server-side filters and pages),
human verdict overrides, blind A/B votes and the closed loop (failures back into review).

Run A is "before" (typically the base model), run B "after" (the fine-tuned one). A regression is a prompt where
B fails and A did not: a harmful prompt newly complied with, or a benign prompt newly refused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased

from core.errors import ConflictError
from curation.auth import require
from curation.review.audit import record
from curation.review.intake import OutsideOutput, send_to_review
from db.engine import write_engine
from db.filters import mutation_condition, text_search
from db.models import VOTE_CHOICES, EvalLabel, EvalOutput, EvalRun, PairVote, Prompt, User, utcnow
from evaluation.metrics import compare_metrics, failed_for, win_rates
from evaluation.runs import EvalError, get_run, outcome_rows, run_identity, trained_on_eval_prompts

SHOWN_CHOICES = ("left", "right", "tie", "both_bad")


# -- comparability --------------------------------------------------------------------------------------------
def comparability(a: EvalRun, b: EvalRun) -> list[str]:
    """Reasons to read a comparison with care (empty when the runs differ only in model/adapter).
    Different suites cannot be compared at all."""
    if a.suite != b.suite:
        raise EvalError(f"runs {a.id} and {b.id} are on different suites ({a.suite} vs {b.suite})")
    notes = []
    if a.suite_version != b.suite_version:
        notes.append(f"suite versions differ ({a.suite_version} vs {b.suite_version}): only prompts both runs "
                     "answered are compared")
    if {k: v for k, v in a.sampling.items()} != {k: v for k, v in b.sampling.items()}:
        notes.append(f"sampling differs: A {a.sampling} vs B {b.sampling}")
    if a.model_path != b.model_path:
        notes.append(f"base models differ: A {a.model} vs B {b.model}")
    ja, jb = (a.judges or {}).get("decides"), (b.judges or {}).get("decides")
    if ja != jb or (a.judges or {}).get("llm") != (b.judges or {}).get("llm"):
        notes.append(f"judges differ (A: {ja or 'prefix match, older run'}, B: {jb or 'prefix match, older run'}): "
                     f"re-score one run with the other's judge (`rational rescore RUN --judge NAME`)")
    if a.adapter_sha256 and a.adapter_sha256 == b.adapter_sha256 and a.model_path == b.model_path:
        notes.append("both runs use the same adapter weights")
    for r in (a, b):
        if r.status != "succeeded":
            notes.append(f"run {r.id} is {r.status}: its outputs are incomplete")
    overlap = sorted(set((a.selection or {}).get("train_overlap", {})) | set((b.selection or {}).get(
        "train_overlap", {})))
    if overlap:
        notes.append(f"set(s) used for both training and evaluation (train split): {', '.join(overlap)}")
    return notes


def compare_runs(engine: Engine, run_a: int, run_b: int) -> dict[str, Any]:
    a, b = get_run(engine, run_a), get_run(engine, run_b)
    notes = comparability(a, b)
    for side, r in (("A", a), ("B", b)):
        n = trained_on_eval_prompts(engine, r)
        if n:
            notes.append(f"run {side}'s adapter was trained on an export holding {n} of this suite's prompts "
                         "(used for both training and evaluation)")
    ra, rb = outcome_rows(engine, a.id), outcome_rows(engine, b.id)
    return {"a": run_identity(a), "b": run_identity(b), "notes": notes,
            "judge": compare_metrics(ra, rb, source="judge"), "human": compare_metrics(ra, rb, source="human")}


# -- per-prompt pairs -----------------------------------------------------------------------------------------
@dataclass
class PairFilter:
    verdict_changed: bool = False
    regressions_only: bool = False
    set_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    search: str = ""
    source: str = "human"  # "human": people's labels override the judges; "judge": judges only
    unvoted_by: Optional[int] = None  # blind mode: only pairs this voter has not voted on


def _pairs_query(run_a: int, run_b: int, flt: PairFilter, cols):
    oa, ob = aliased(EvalOutput, name="oa"), aliased(EvalOutput, name="ob")
    fa = func.coalesce(oa.human_failed, oa.failed) if flt.source == "human" else oa.failed
    fb = func.coalesce(ob.human_failed, ob.failed) if flt.source == "human" else ob.failed
    q = (select(*cols(oa, ob, fa, fb))
         .select_from(oa).join(ob, and_(ob.prompt_id == oa.prompt_id, ob.run_id == run_b))
         .join(Prompt, Prompt.id == oa.prompt_id).where(oa.run_id == run_a))
    if flt.verdict_changed:
        q = q.where(fa != fb)
    if flt.regressions_only:
        q = q.where(fb.is_(True), fa.is_(False))
    if flt.set_names:
        q = q.where(oa.set_name.in_(flt.set_names))
    if flt.categories:
        q = q.where(oa.category.in_(flt.categories))
    if flt.mutations:
        q = q.where(mutation_condition(oa.mutation, flt.mutations))
    if flt.unvoted_by is not None:
        q = q.where(~exists().where(PairVote.voter_id == flt.unvoted_by, PairVote.output_a_id == oa.id,
                                    PairVote.output_b_id == ob.id))
    if flt.search.strip():
        q = q.where(text_search(flt.search.strip(), Prompt.text, oa.response, ob.response, oa.reasoning,
                                ob.reasoning))
    return q


def count_pairs(engine: Engine, run_a: int, run_b: int, flt: Optional[PairFilter] = None) -> int:
    q = _pairs_query(run_a, run_b, flt or PairFilter(), lambda oa, ob, fa, fb: [func.count()])
    with Session(engine) as s:
        return s.execute(q).scalar_one()


def _side(o: EvalOutput, failed_eff: bool) -> dict[str, Any]:
    return {"output_id": o.id, "reasoning": o.reasoning, "response": o.response, "raw": o.raw,
            "parse_ok": o.parse_ok, "refused": o.refused if o.human_refused is None else o.human_refused,
            "judge_refused": o.refused, "human_refused": o.human_refused, "failed": bool(failed_eff),
            "judge_labels": o.judge_labels, "version": o.version}


def list_pairs(engine: Engine, run_a: int, run_b: int, flt: Optional[PairFilter] = None, *, limit: int = 20,
               offset: int = 0) -> list[dict[str, Any]]:
    """One page of prompts with both runs' outputs, ordered by prompt id."""
    flt = flt or PairFilter()
    q = _pairs_query(run_a, run_b, flt, lambda oa, ob, fa, fb: [Prompt.id, Prompt.text, oa, ob, fa, fb])
    q = q.order_by(Prompt.id).limit(limit).offset(offset)
    out = []
    with Session(engine) as s:
        for pid, text, oa, ob, fa, fb in s.execute(q):
            out.append({"prompt_id": pid, "prompt": text, "set": oa.set_name, "category": oa.category,
                        "mutation": oa.mutation, "expected_behavior": oa.expected_behavior, "metric": oa.metric,
                        "a": _side(oa, fa), "b": _side(ob, fb), "changed": bool(fa) != bool(fb),
                        "regression": bool(fb) and not bool(fa)})
    return out


def facet_values(engine: Engine, run_a: int) -> dict[str, list[str]]:
    """Sets, categories and mutations present in a run (filter choices)."""
    with Session(engine) as s:
        def distinct(col):
            return [v for v in s.execute(select(col).where(EvalOutput.run_id == run_a).distinct().order_by(col))
                    .scalars() if v is not None]
        return {"sets": distinct(EvalOutput.set_name), "categories": distinct(EvalOutput.category),
                "mutations": ["none"] + distinct(EvalOutput.mutation)}


# -- human verdicts -------------------------------------------------------------------------------------------
def set_human_label(engine: Engine, user: User | int, output_id: int, refused: bool, expected_version: int,
                    comment: str = "") -> int:
    """A person's refused/complied verdict overrides the judges on this output; returns the new version."""
    with Session(write_engine(engine)) as s:
        me = require(s, user, "label_outputs")
        o = s.execute(select(EvalOutput).where(EvalOutput.id == output_id).with_for_update()).scalars().first()
        if o is None:
            raise ValueError(f"eval output {output_id} does not exist")
        if o.version != expected_version:
            raise ConflictError(f"eval output {output_id} was labelled by someone else meanwhile (version "
                                f"{o.version}, you had {expected_version})",
                                current={"human_refused": o.human_refused, "version": o.version})
        before = {"human_refused": o.human_refused, "human_failed": o.human_failed, "version": o.version}
        o.human_refused, o.human_failed = bool(refused), failed_for(o.metric, bool(refused))
        o.version += 1
        s.add(EvalLabel(output_id=o.id, user_id=me.id, refused=o.human_refused, failed=o.human_failed,
                        comment=comment))
        record(s, me.id, "eval_output", o.id, "label", before,
               {"human_refused": o.human_refused, "human_failed": o.human_failed, "version": o.version})
        s.commit()
        return o.version


# -- blind votes ----------------------------------------------------------------------------------------------
def a_on_left(voter_id: int, output_a_id: int, output_b_id: int) -> bool:
    """Which side A is shown on, per voter and prompt: looks random, but is stable across page reruns, and the
    server recomputes it when the vote arrives, so a page cannot misreport what the voter saw."""
    digest = hashlib.sha256(f"pair-vote:{voter_id}:{output_a_id}:{output_b_id}".encode()).digest()
    return digest[0] % 2 == 0


def blind_pair(pair: dict[str, Any], voter_id: int) -> dict[str, Any]:
    """The pair as the blind page shows it: left/right, no run names, no verdicts."""
    left_is_a = a_on_left(voter_id, pair["a"]["output_id"], pair["b"]["output_id"])
    left, right = (pair["a"], pair["b"]) if left_is_a else (pair["b"], pair["a"])
    strip = ("reasoning", "response")
    return {"prompt_id": pair["prompt_id"], "prompt": pair["prompt"],
            "left": {k: left[k] for k in strip}, "right": {k: right[k] for k in strip}}


def record_vote(engine: Engine, user: User | int, run_a: int, run_b: int, prompt_id: int, shown_choice: str, *,
                seconds_spent: Optional[float] = None) -> PairVote:
    """Store a blind vote with the true identities; voting again on the same pair replaces the choice."""
    if shown_choice not in SHOWN_CHOICES:
        raise ValueError(f"choice '{shown_choice}' is not one of {', '.join(SHOWN_CHOICES)}")
    with Session(write_engine(engine), expire_on_commit=False) as s:
        me = require(s, user, "vote")
        ids = dict(s.execute(select(EvalOutput.run_id, EvalOutput.id).where(
            EvalOutput.prompt_id == prompt_id, EvalOutput.run_id.in_((run_a, run_b)))).all())
        if run_a not in ids or run_b not in ids:
            raise ValueError(f"prompt {prompt_id} was not answered by both runs {run_a} and {run_b}")
        left_a = a_on_left(me.id, ids[run_a], ids[run_b])
        choice = {"left": "a" if left_a else "b", "right": "b" if left_a else "a"}.get(shown_choice, shown_choice)
        assert choice in VOTE_CHOICES
        vote = s.execute(select(PairVote).where(PairVote.voter_id == me.id, PairVote.output_a_id == ids[run_a],
                                                PairVote.output_b_id == ids[run_b])).scalars().first()
        if vote is None:
            vote = PairVote(run_a_id=run_a, run_b_id=run_b, prompt_id=prompt_id, output_a_id=ids[run_a],
                            output_b_id=ids[run_b], voter_id=me.id, a_on_left=left_a, shown_choice=shown_choice,
                            choice=choice, seconds_spent=seconds_spent)
        else:
            vote.shown_choice, vote.choice, vote.seconds_spent, vote.created_at = (shown_choice, choice,
                                                                                    seconds_spent, utcnow())
        s.add(vote)
        s.commit()
        return vote



def vote_summary(engine: Engine, run_a: int, run_b: int) -> dict[str, Any]:
    """Win rates (B vs A, ties half) with bootstrap CIs, overall and per voter."""
    with Session(engine) as s:
        rows = s.execute(select(User.username, PairVote.choice).join(User, User.id == PairVote.voter_id)
                         .where(PairVote.run_a_id == run_a, PairVote.run_b_id == run_b)
                         .order_by(User.username, PairVote.id)).all()
    per: dict[str, list[str]] = {}
    for name, choice in rows:
        per.setdefault(name, []).append(choice)
    return {"overall": win_rates([c for _, c in rows]), "per_voter": {n: win_rates(cs) for n, cs in per.items()}}


# -- closed loop ----------------------------------------------------------------------------------------------
def send_failures_to_review(engine: Engine, user: User | int, run_id: int, *, queue_name: Optional[str] = None,
                            source: str = "human") -> dict[str, Any]:
    """The run's failures (harmful prompts complied with, benign prompts refused) become pending traces carrying
    the model's output, in a review queue, so the next data round fixes what this model got wrong. Idempotent:
    outputs already sent are skipped."""
    run = get_run(engine, run_id)
    eff = func.coalesce(EvalOutput.human_failed, EvalOutput.failed) if source == "human" else EvalOutput.failed
    with Session(engine) as s:
        fails = list(s.execute(select(EvalOutput).where(EvalOutput.run_id == run.id, eff.is_(True))
                               .order_by(EvalOutput.prompt_id)).scalars())
    outputs = [OutsideOutput(
        prompt_id=o.prompt_id, reasoning=o.reasoning, response=o.response, raw=o.raw, parse_ok=o.parse_ok,
        refused=o.refused if o.human_refused is None else o.human_refused,
        label_agent="eval:" + ("human" if o.human_refused is not None
                               else ((o.judge_labels or {}).get("judge") or {}).get("ref") or "judge"),
        prompt_tokens=o.prompt_tokens, completion_tokens=o.completion_tokens, gen_seconds=o.gen_seconds,
        meta={"source": "eval_failure", "failure": "benign_refused" if o.metric == "false_refusal_rate"
              else "harmful_complied", "eval_run_id": run.id, "eval_output_id": o.id,
              "adapter_sha256": run.adapter_sha256}) for o in fails]
    return send_to_review(
        engine, user, source_name=f"eval-failures:run-{run.id}", model=run.model, backend=run.backend,
        sampling=run.sampling, params={"sampling": run.sampling, "adapter_path": run.adapter_path,
                                       "adapter_sha256": run.adapter_sha256},
        selection={"eval_run_id": run.id, "suite": run.suite}, outputs=outputs,
        queue_name=queue_name or f"Eval failures: {run.name}"[:200],
        queue_description=f"Failures of eval run {run.id} ({run.suite}) sent to review",
        audit=("eval_run", run.id, "send_failures_to_review"))


def run_choices(engine: Engine) -> list[dict[str, Any]]:
    """Runs for pickers: id, label, suite."""
    with Session(engine) as s:
        rows = s.execute(select(EvalRun.id, EvalRun.name, EvalRun.suite, EvalRun.status, EvalRun.n_prompts)
                         .order_by(EvalRun.id.desc()).limit(500)).all()
    return [{"id": i, "label": f"#{i} {n} [{st}, {k} prompts]", "suite": su, "status": st} for i, n, su, st, k in rows]


def comparable_choices(choices: list[dict[str, Any]], run_a: int) -> list[dict[str, Any]]:
    """Of run_choices(), the runs that can stand beside run A: the same suite, not A itself."""
    suite = next((r["suite"] for r in choices if r["id"] == run_a), None)
    return [r for r in choices if r["suite"] == suite and r["id"] != run_a]


def word_diff(a: str, b: str) -> str:
    """Word-level diff of two answers as plain text: [-only in A-] {+only in B+} (shown as text, never markup)."""
    import difflib

    wa, wb = a.split(), b.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(wa[i1:i2])
            continue
        if i2 > i1:
            out.append("[-" + " ".join(wa[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + " ".join(wb[j1:j2]) + "+}")
    return " ".join(out)
