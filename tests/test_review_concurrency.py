"""Eight threads claim from one queue at once, on SQLite and on PostgreSQL: no trace is claimed beyond the
overlap, and none is lost."""
from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from curation.review import annotations, claims, queues
from db.models import Annotation, Claim, Trace
from tests.factories import make_traces, make_user

THREADS, TRACES, OVERLAP = 8, 30, 3


def _run_threads(fn, users):
    errors, barrier = [], threading.Barrier(len(users))

    def body(u):
        try:
            barrier.wait()
            fn(u)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a claimer hung"
    assert errors == []


def _setup(engine):
    admin = make_user(engine, "admin")
    users = [make_user(engine, "annotator") for _ in range(THREADS)]
    make_traces(engine, TRACES)
    q = queues.create_queue(engine, admin, "busy", {}, overlap=OVERLAP, members=[u.id for u in users])
    return users, q


def test_concurrent_claims_respect_overlap(engine):
    users, q = _setup(engine)
    got: dict[int, list[int]] = {u.id: [] for u in users}

    def claim_all(u):
        while (c := claims.claim_next(engine, u, q.id, keep=tuple(got[u.id]))) is not None:
            got[u.id].append(c.trace_id)

    _run_threads(claim_all, users)
    with Session(engine) as s:
        per_trace = dict(s.execute(select(Claim.trace_id, func.count()).where(Claim.kind == "active")
                                   .group_by(Claim.trace_id)).all())
    assert max(per_trace.values()) <= OVERLAP
    assert len(per_trace) == TRACES and sum(per_trace.values()) == TRACES * OVERLAP  # every slot taken once
    assert sum(len(v) for v in got.values()) == TRACES * OVERLAP
    assert all(len(v) == len(set(v)) for v in got.values())  # nobody got the same trace twice


def test_concurrent_claim_and_submit_completes_every_trace(engine):
    users, q = _setup(engine)

    def work(u):
        while (c := claims.claim_next(engine, u, q.id)) is not None:
            annotations.submit_annotation(engine, u, c.trace_id, decision="approve", trace_version=c.trace_version,
                                     queue_id=q.id)

    _run_threads(work, users)
    with Session(engine) as s:
        per_trace = dict(s.execute(select(Annotation.trace_id, func.count()).group_by(Annotation.trace_id)).all())
        statuses = set(s.execute(select(Trace.status)).scalars())
        left = s.execute(select(func.count()).select_from(Claim)).scalar_one()
    assert len(per_trace) == TRACES and set(per_trace.values()) == {OVERLAP}
    assert statuses == {"approved"} and left == 0
