"""Test data for the review workflow: users of each role, and traces inserted through the data layer."""
from __future__ import annotations

import hashlib
import itertools
from typing import Iterable, Optional

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from curation.auth import create_user
from db.models import AutoLabel, GenerationRun, Prompt, PromptSet, Trace, User

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def make_user(engine, role: str, name: Optional[str] = None) -> User:
    return create_user(engine, name or f"{role}{next(_seq)}", PASSWORD, role)


def make_users(engine) -> dict[str, User]:
    return {r: make_user(engine, r, r) for r in ("admin", "reviewer", "annotator")}


def make_traces(engine, n: int, *, set_name: str = "testset", behavior: str = "refuse",
                category: Optional[str] = "cybercrime", responses: Optional[Iterable[str]] = None,
                auto_labels: Optional[dict[int, list[tuple[str, str]]]] = None, mutation: Optional[str] = None,
                batch: int = 5000, reasoning: Optional[str] = None) -> list[int]:
    """n traces, each on its own prompt. auto_labels: {index: [(kind, label), ...]}; reasoning: the same
    reasoning text for every trace (default: a short one each). Returns trace ids in order."""
    responses = list(responses) if responses is not None else None
    with Session(engine) as s:
        ps = s.execute(select(PromptSet).where(PromptSet.name == set_name)).scalars().first()
        if ps is None:
            ps = PromptSet(project_id=1, name=set_name)
            s.add(ps)
        run = GenerationRun(model="tiny", backend="transformers")
        s.add(run)
        s.flush()
        ps_id, run_id = ps.id, run.id
        tag = f"{set_name}:{run_id}"
        ids: list[int] = []
        for start in range(0, n, batch):
            rng = range(start, min(n, start + batch))
            s.execute(insert(Prompt), [
                {"project_id": 1, "set_id": ps_id, "text": f"prompt {tag}:{i}",
                 "sha256": hashlib.sha256(f"{tag}:{i}".encode()).hexdigest(), "expected_behavior": behavior,
                 "split": "train", "category": category, "mutation": mutation, "meta": {}} for i in rng])
            pids = list(s.execute(select(Prompt.id).where(Prompt.set_id == ps_id,
                                                          Prompt.text.like(f"prompt {tag}:%"))
                                  .order_by(Prompt.id)).scalars())[len(ids):]
            s.execute(insert(Trace), [
                {"prompt_id": pid, "run_id": run_id, "sample_index": 0, "reasoning": reasoning or f"reasoning {i}",
                 "response": responses[i] if responses else f"response {i}", "raw": "", "parse_ok": True,
                 "strategy": "single", "model": "tiny", "backend": "transformers", "sampling": {},
                 "status": "pending", "version": 1, "meta": {}} for pid, i in zip(pids, rng)])
            ids = list(s.execute(select(Trace.id).where(Trace.run_id == run_id).order_by(Trace.id)).scalars())
        for i, labels in (auto_labels or {}).items():
            for kind, label in labels:
                s.add(AutoLabel(trace_id=ids[i], kind=kind, agent=f"test-{kind}", label=label))
        s.commit()
        return ids
