"""Strategies, the demo library, streaming runs, yields and warm engines, on real SQLite and PostgreSQL.

`EchoBackend` is a fake backend (see its docstring): a random-weight model cannot write clauses or refusals, and
these tests check how strategies assemble what a model writes, so the model's side is scripted.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from core.errors import PermissionDenied, UserError
from core.identity import prompt_sha256
from curation.backends import ChatResult, Completion
from curation.backends.base import Streaming
from curation.generation import demos
from curation.generation.config import GenerationConfig, Selection
from curation.generation.runs import create_run, get_run, run_generation
from curation.generation.yields import default_strategy, rejected_samples, run_yield
from db.models import AutoLabel, Demo, Prompt, PromptSet, Trace
from tests.factories import make_users

HARMFUL = "How do I pick the lock on my neighbour's front door?"
BENIGN = "How do I bake sourdough bread at home?"


class EchoBackend(Streaming):
    """Fake backend with scripted model text: a clause after "The user is asking me to", a reason after
    "because", a plain answer to a bare question, one result per poll (so each sample finishes on its own)."""

    name, model = "transformers", "echo"

    def __init__(self):
        self.queue, self.requests = [], []

    def submit(self, key, r):
        self.requests.append(r)
        last = r.messages[-1]["content"]
        user = next(m["content"] for m in reversed(r.messages) if m["role"] == "user")
        if last.endswith("asking me to"):
            text = "open a lock" if "lock" in user else "bake bread"
        elif last.endswith("because"):
            text = "it is breaking into a home" if "lock" in user else "baking is an ordinary skill"
        elif r.continue_final_message:
            text = "Some reasoning about the lock.\n</think>\nI can't help with that."
        else:
            text = "Mix flour, water and starter, let it rise overnight, then bake at 230 C for 40 minutes."
        self.queue.append((key, ChatResult([Completion(text, 7, "stop")] * r.n, 11, 0.0, self.name, self.model)))

    def pending(self):
        return len(self.queue)

    def poll(self, timeout_s=1.0):
        return [self.queue.pop(0)] if self.queue else []

    def close(self):
        pass


def add_prompts(engine, rows=((HARMFUL, "refuse"), (BENIGN, "comply")), set_name="strat", split="train"):
    with Session(engine) as s:
        ps = PromptSet(project_id=1, name=set_name)
        s.add(ps)
        s.flush()
        out = [Prompt(project_id=1, set_id=ps.id, text=t, sha256=prompt_sha256(t), expected_behavior=b, split=split)
               for t, b in rows]
        s.add_all(out)
        s.commit()
        return [p.id for p in out]


def traces(engine, run_id):
    with Session(engine) as s:
        return {t.meta["behavior"]: t for t in s.execute(select(Trace).where(Trace.run_id == run_id)).scalars()}


def test_scaffold_builds_reasoning_from_clauses_and_conditions_the_reply(engine):
    add_prompts(engine)
    be = EchoBackend()
    run = create_run(engine, GenerationConfig(model="m", strategy="scaffold"), Selection(set_names=["strat"]))
    run_generation(engine, run.id, backend=be)
    got = traces(engine, run.id)
    refuse, comply = got["refuse"], got["comply"]
    assert refuse.reasoning == ("The user is asking me to open a lock. This is harmful because it is breaking into "
                                "a home. So I should not help with this, and I will say why.")
    assert refuse.response == "I can't help with that, because it is breaking into a home."
    assert comply.reasoning.startswith("The user is asking me to bake bread. This is safe to help with because")
    assert comply.response.startswith("Mix flour")  # the model's own plain answer
    assert refuse.parse_ok and comply.parse_ok and refuse.meta["strategy_ref"] == "scaffold@v1"
    assert refuse.meta["clauses"] == ["open a lock", "it is breaking into a home"]
    # Demos are earlier turns, drawn from the library, balanced by behaviour, never the prompt itself.
    shown = [r for r in be.requests if r.messages[0]["role"] == "system"]
    assert shown and all(sum(m["role"] == "user" for m in r.messages) == 3 for r in shown)  # 2 demos + the prompt
    assert len(refuse.meta["demo_ids"]) == 2
    with Session(engine) as s:
        kinds = {s.get(Demo, i).behavior for i in refuse.meta["demo_ids"]}
        usable = dict(s.execute(select(AutoLabel.trace_id, AutoLabel.label).where(AutoLabel.kind == "usable")).all())
    assert kinds == {"refuse", "comply"}
    assert usable[refuse.id] == "yes" and usable[comply.id] == "yes"
    assert run_yield(engine, run.id)["yield"] == {"refuse": {"samples": 1, "parsed": 1, "matches": 1, "usable": 1},
                                                   "comply": {"samples": 1, "parsed": 1, "matches": 1, "usable": 1}}


def test_scaffold_can_conclude_against_the_expected_behaviour(engine):
    """The rejected side of a safety pair: a harmful prompt's reasoning concludes to help and the reply goes on
    from the comply opener, in the model's own words."""
    add_prompts(engine, rows=((HARMFUL, "refuse"),))
    run = create_run(engine, GenerationConfig(model="m", strategy="scaffold", strategy_params={
        "conclude": "comply", "comply_reply": "opener"}), Selection(set_names=["strat"]))
    run_generation(engine, run.id, backend=EchoBackend())
    t = traces(engine, run.id)["refuse"]
    assert t.reasoning == ("The user is asking me to open a lock. This is safe to help with because it is breaking "
                           "into a home. So I should help with this.")
    assert t.response.startswith("Sure. ")


class StutteringBackend(EchoBackend):
    """The first answer to each clause request is empty, as a small model's sometimes is."""

    def submit(self, key, r):
        last = r.messages[-1]["content"]
        if last.endswith(("asking me to", "because")) and last not in self.seen:
            self.seen.add(last)
            self.requests.append(r)
            self.queue.append((key, ChatResult([Completion("", 0, "stop")] * r.n, 11, 0.0, self.name, self.model)))
            return
        super().submit(key, r)


def test_an_unusable_clause_is_written_again_a_little_hotter(engine):
    add_prompts(engine, rows=((HARMFUL, "refuse"),))
    be = StutteringBackend()
    be.seen = set()
    run = create_run(engine, GenerationConfig(model="m", strategy="scaffold", temperature=0.0),
                     Selection(set_names=["strat"]))
    run_generation(engine, run.id, backend=be)
    assert traces(engine, run.id)["refuse"].meta["clauses"] == ["open a lock", "it is breaking into a home"]
    clause_requests = [r for r in be.requests if r.messages[-1]["content"].endswith(("asking me to", "because"))]
    assert [r.sampling.temperature for r in clause_requests] == pytest.approx([0.0, 0.9, 0.0, 0.9])


def test_every_strategy_template_is_versioned_and_snapshotted(engine):
    from curation.templates import save_template

    add_prompts(engine)
    save_template(engine, "scaffold.reply_refuse", "No: {why}.")
    run = create_run(engine, GenerationConfig(model="m", strategy="scaffold"), Selection(set_names=["strat"]))
    assert run.templates["scaffold.reply_refuse"]["version"] == 1
    assert {"scaffold.clause_request", "scaffold.stop", "self_check.refuse"} <= set(run.templates)
    save_template(engine, "scaffold.reply_refuse", "Later edits do not reach a created run: {why}.")
    run_generation(engine, run.id, backend=EchoBackend())
    refuse = traces(engine, run.id)["refuse"]
    assert refuse.response == "No: it is breaking into a home." and "scaffold.reply_refuse@v1" in \
        refuse.template_version


def test_samples_are_stored_and_counted_as_they_finish(engine):
    add_prompts(engine, [(f"{HARMFUL} ({i})", "refuse") for i in range(6)])
    seen: list[tuple[int, int, str]] = []

    def progress(done, total, msg):
        with Session(engine) as s:
            seen.append((done, s.execute(select(func.count(Trace.id))).scalar(), msg))

    import curation.generation.runs as runs_mod

    run = create_run(engine, GenerationConfig(model="m", strategy="prefill"), Selection(set_names=["strat"]))
    old, runs_mod.FLUSH_S = runs_mod.FLUSH_S, 0.0
    try:
        run_generation(engine, run.id, backend=EchoBackend(), progress=progress)
    finally:
        runs_mod.FLUSH_S = old
    counts = [d for d, _, _ in seen]
    assert counts[0] == 0 and counts[-1] == 6 and len(set(counts)) == 7  # one step per sample, not per batch
    assert all(stored == done for done, stored, _ in seen)  # each sample is in the database when counted
    assert "tok/s" in seen[-1][2] and "ETA" in seen[-1][2]
    s = get_run(engine, run.id).summary
    assert s["done"] == 6 and s["total"] == 6 and s["yield"]["refuse"]["samples"] == 6


def test_rejected_samples_carry_their_reason(engine):
    add_prompts(engine)
    run = create_run(engine, GenerationConfig(model="m", strategy="single"), Selection(set_names=["strat"]))
    run_generation(engine, run.id, backend=EchoBackend())  # "single" output has no <think> block: rejected
    rej = rejected_samples(engine, run.id)
    assert len(rej) == 2 and all("did not parse" in r["reason"] for r in rej)
    assert run_yield(engine, run.id)["rejected"]["did not parse"] == 2


def test_demo_library_grows_from_review_and_the_next_run_shows_it(engine):
    from curation.review import annotations, claims, queues

    users = make_users(engine)
    assert demos.ensure_shipped(engine) > 0 and demos.ensure_shipped(engine) == 0  # idempotent
    pids = add_prompts(engine, [("How can I stop my dog from barking at night?", "comply"), (HARMFUL, "refuse"),
                                (BENIGN, "comply")])
    first = create_run(engine, GenerationConfig(model="m", strategy="scaffold"), Selection(prompt_ids=pids[:1]))
    run_generation(engine, first.id, backend=EchoBackend())
    tid = traces(engine, first.id)["comply"].id
    q = queues.create_queue(engine, users["admin"], "demo-q", {"run_ids": [first.id]},
                            members=[users["reviewer"].id, users["annotator"].id])
    c = claims.claim_next(engine, users["reviewer"], q.id)
    annotations.submit_annotation(engine, users["reviewer"], c.trace_id, decision="needs_edit",
                                  trace_version=c.trace_version, queue_id=q.id,
                                  edited_response="Walk it before bed and keep it in a quiet room.")
    with pytest.raises(PermissionDenied):
        demos.promote(engine, users["annotator"], tid)
    d = demos.promote(engine, users["reviewer"], tid)
    assert d["source"] == "review" and d["response"] == "Walk it before bed and keep it in a quiet room."
    nxt = create_run(engine, GenerationConfig(model="m", strategy="scaffold"), Selection(prompt_ids=pids[1:]))
    run_generation(engine, nxt.id, backend=EchoBackend())
    shown = {i for t in traces(engine, nxt.id).values() for i in t.meta["demo_ids"]}
    assert d["id"] in shown  # reviewers' demos come first, for both behaviours' samples


def test_demos_never_show_the_prompt_itself_or_an_eval_prompt(engine):
    demos.ensure_shipped(engine)
    shipped = demos.list_demos(engine)
    own = next(x for x in shipped if x["behavior"] == "refuse")
    picker = demos.DemoPicker(engine, seed=3)
    for k in range(20):
        got = picker.pick(own["prompt"], "refuse", 4, prompt_id=1, sample=k)
        assert own["id"] not in {g["id"] for g in got} and len(got) == 4
        assert sum(g["behavior"] == "refuse" for g in got) == 2  # balanced by behaviour
    assert picker.pick(HARMFUL, "refuse", 2, prompt_id=9, sample=0) == picker.pick(HARMFUL, "refuse", 2,
                                                                                   prompt_id=9, sample=0)
    # A shipped demo's prompt imported later as held-out evaluation: never shown again.
    add_prompts(engine, [(own["prompt"], "refuse")], set_name="held-out", split="eval")
    picker = demos.DemoPicker(engine, seed=3)
    assert all(own["id"] not in {g["id"] for g in picker.pick(HARMFUL, "refuse", 4, sample=k)} for k in range(20))


def test_an_eval_split_trace_never_becomes_a_demo(engine):
    users = make_users(engine)
    pids = add_prompts(engine, [(HARMFUL, "refuse")], set_name="ev", split="eval")
    run = create_run(engine, GenerationConfig(model="m", strategy="scaffold"), Selection(prompt_ids=pids))
    run_generation(engine, run.id, backend=EchoBackend())
    t = traces(engine, run.id)["refuse"]
    with Session(engine) as s:
        s.get(Trace, t.id).status = "approved"
        s.commit()
    with pytest.raises(UserError, match="eval-split"):
        demos.promote(engine, users["admin"], t.id)


def test_default_strategy_is_the_best_measured_for_the_model(engine):
    add_prompts(engine, [(f"{HARMFUL} ({i})", "refuse") for i in range(12)]
                + [(f"{BENIGN} ({i})", "comply") for i in range(12)])
    best, why = default_strategy(engine, "never-measured-model")
    assert best == "scaffold" and "nothing measured" in why and "embedded model" in why
    run = create_run(engine, GenerationConfig(model="mine", strategy="single", samples=2),
                     Selection(set_names=["strat"]))
    run_generation(engine, run.id, backend=EchoBackend())
    best, why = default_strategy(engine, "mine")  # one strategy measured, nothing usable: not a default
    assert best == "scaffold" and "no usable trace" in why
    for strategy in ("scaffold",):
        run = create_run(engine, GenerationConfig(model="mine", strategy=strategy, samples=2),
                         Selection(set_names=["strat"]))
        run_generation(engine, run.id, backend=EchoBackend())
    best, why = default_strategy(engine, "mine")
    assert best == "scaffold" and "your runs" in why and "single 0%" in why
    shipped, shipped_why = default_strategy(engine, "smollm2-135m-instruct")
    assert shipped == "scaffold" and "shipped benchmark" in shipped_why


def test_warm_engine_pool_reuses_one_engine_and_frees_it(monkeypatch):
    import curation.backends.engines as engines

    made, closed = [], []

    class Fake:
        def __init__(self, kind, model, **opts):
            made.append((kind, model))

        def close(self):
            closed.append(True)

    monkeypatch.setattr(engines, "make_backend", Fake)
    pool = engines.EnginePool(idle_s=0.3)
    with pool.engine("vllm", "a") as one:
        pass
    with pool.engine("vllm", "a") as two:
        assert two is one
    assert pool.starts == 1 and not closed
    with pool.engine("vllm", "b"):  # another model: the first is closed first (one engine at a time)
        assert closed == [True] and pool.starts == 2
    import time

    time.sleep(0.6)
    assert closed == [True, True] and pool.held() is None  # idle: freed
    with pytest.raises(RuntimeError):
        with pool.engine("vllm", "c"):
            raise RuntimeError("a job failed")
    assert pool.held() is None  # a failed job's engine is not handed on
