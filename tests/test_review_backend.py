"""Review workflow on real SQLite and PostgreSQL: roles, queues, consensus, adjudication, undo, locking, audit."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import ConflictError, PermissionDenied
from curation import auth
from curation.auth import list_users
from curation.review import agreement as agr
from curation.review import annotations, claims, preferences, queues, reading
from curation.review.audit import trace_history
from db.engine import make_engine
from db.models import Annotation, AuditEvent, Claim, Trace, User, utcnow
from tests.factories import make_traces, make_user, make_users


def _trace(engine, tid) -> Trace:
    with Session(engine) as s:
        return s.get(Trace, tid)


def _annotate(engine, user, queue, decision="approve", **kw):
    c = claims.claim_next(engine, user, queue.id)
    assert c is not None
    return c, annotations.submit_annotation(engine, user, c.trace_id, decision=decision, trace_version=c.trace_version,
                                       queue_id=queue.id, **kw)


def test_role_matrix(engine):
    """Every action, for every role: allowed where the role has the right, PermissionDenied where not."""
    users = make_users(engine)
    tids = make_traces(engine, 6)
    admin = users["admin"]
    q = queues.create_queue(engine, admin, "q", {}, overlap=1, members=[u.id for u in users.values()])
    # One trace waiting for adjudication, for the adjudicate action.
    q2 = queues.create_queue(engine, admin, "q2", {}, overlap=2, members=[u.id for u in users.values()])
    c1 = claims.claim_next(engine, users["annotator"], q2.id)
    annotations.submit_annotation(engine, users["annotator"], c1.trace_id, decision="approve",
                             trace_version=c1.trace_version, queue_id=q2.id)
    c2 = claims.claim_next(engine, users["reviewer"], q2.id, keep=())
    while c2.trace_id != c1.trace_id:  # reviewer works until reaching the same trace
        annotations.submit_annotation(engine, users["reviewer"], c2.trace_id, decision="approve",
                                 trace_version=c2.trace_version, queue_id=q2.id)
        c2 = claims.claim_next(engine, users["reviewer"], q2.id)
    annotations.submit_annotation(engine, users["reviewer"], c2.trace_id, decision="reject",
                             trace_version=c2.trace_version, queue_id=q2.id)
    assert _trace(engine, c1.trace_id).status == "needs_adjudication"
    counter = iter(range(1000))

    def claim_and_submit(u):
        c = claims.claim_next(engine, u, q.id)
        annotations.submit_annotation(engine, u, c.trace_id, decision="approve", trace_version=c.trace_version,
                                 queue_id=q.id)

    actions = {
        "create_queue": lambda u: queues.create_queue(engine, u, f"new{next(counter)}", {}),
        "update_queue": lambda u: queues.update_queue(engine, u, q.id, queues.list_queues(engine, admin)[0]["version"],
                                                      lease_seconds=300),
        "refresh_queue": lambda u: queues.refresh_queue(engine, u, q.id),
        "queue_progress": lambda u: queues.queue_progress(engine, u, q.id),
        "claim_and_submit": claim_and_submit,
        "adjudicate": lambda u: annotations.adjudicate(engine, u, c1.trace_id, "approved",
                                                  _trace(engine, c1.trace_id).version),
        "bulk": lambda u: annotations.bulk_decide(engine, u, {"statuses": ["approved"]}, "approved",
                                             expected_count=len(reading.browse(engine, admin,
                                                                              {"statuses": ["approved"]})[1])),
        "browse": lambda u: reading.browse(engine, u, {}),
        "history": lambda u: trace_history(engine, u, tids[0]),
        "agreement": lambda u: agr.agreement(engine, u, q2.id),
        "activity": lambda u: reading.activity(engine, u),
        "add_user": lambda u: auth.add_user(engine, u, f"new{next(counter)}", "password123", "annotator"),
        "update_user": lambda u: auth.update_user(engine, u, users["annotator"].id, role="annotator"),
        "own_settings": lambda u: preferences.save_settings(engine, u, ["x"], preferences.get_settings(engine, u)["version"]),
    }
    allowed = {
        "annotator": {"claim_and_submit", "own_settings"},
        "reviewer": {"claim_and_submit", "own_settings", "adjudicate", "browse", "history", "agreement"},
        "admin": set(actions),
    }
    wrong = []
    for role in ("annotator", "reviewer", "admin"):
        for name, fn in actions.items():
            if name == "adjudicate" and role == "admin":
                continue  # the reviewer already settled it; checked for admins below
            try:
                fn(users[role])
                ok = True
            except PermissionDenied:
                ok = False
            if ok != (name in allowed[role]):
                wrong.append((role, name, ok))
    assert wrong == []
    # A non-member annotator cannot claim; a deactivated user can do nothing.
    outsider = make_user(engine, "annotator")
    with pytest.raises(PermissionDenied):
        claims.claim_next(engine, outsider, q.id)
    auth.update_user(engine, admin, users["reviewer"].id, is_active=False)
    with pytest.raises(PermissionDenied):
        reading.browse(engine, users["reviewer"], {})
    # The role is read from the database, not from the caller's object.
    stale = User(id=users["annotator"].id, username="annotator", password_hash="", role="admin")
    with pytest.raises(PermissionDenied):
        annotations.bulk_decide(engine, stale, {}, "approved", expected_count=6)


def test_consensus_adjudication_and_priority(engine):
    users = make_users(engine)
    a1, a2 = users["annotator"], make_user(engine, "annotator")
    # The deciding judge says trace 3 complied, against "refuse"; trace 4 is inconsistent: both come first. A
    # comparison judge's refusal label on trace 2 does not change the priority.
    tids = make_traces(engine, 5, auto_labels={3: [("decision", "comply")], 4: [("consistency", "inconsistent")],
                                               0: [("decision", "refuse")], 2: [("refusal", "complied")]})
    q = queues.create_queue(engine, users["admin"], "pair", {"behaviors": ["refuse"]}, overlap=2,
                            members=[a1.id, a2.id])
    order = []
    while (c := claims.claim_next(engine, a1, q.id)) is not None:
        order.append(c.trace_id)
        decision = "reject" if c.trace_id == tids[1] else "approve"
        annotations.submit_annotation(engine, a1, c.trace_id, decision=decision, trace_version=c.trace_version,
                                 queue_id=q.id, behavior_label="refuse", quality=4)
    assert order == [tids[3], tids[4], tids[0], tids[1], tids[2]]
    assert {_trace(engine, t).status for t in tids} == {"in_review"}
    while (c := claims.claim_next(engine, a2, q.id)) is not None:
        annotations.submit_annotation(engine, a2, c.trace_id, decision="approve", trace_version=c.trace_version,
                                 queue_id=q.id)
    st = {t: _trace(engine, t) for t in tids}
    assert [st[t].status for t in tids] == ["approved", "needs_adjudication", "approved", "approved", "approved"]
    assert st[tids[0]].decided_how == "consensus" and st[tids[0]].decided_by == a2.id
    waiting, items = reading.adjudication_items(engine, users["reviewer"])
    assert waiting == 1 and [i["trace_id"] for i in items] == [tids[1]]
    assert sorted(a["decision"] for a in items[0]["annotations"]) == ["approve", "reject"]
    annotations.adjudicate(engine, users["reviewer"], tids[1], "rejected", st[tids[1]].version, comment="unsafe")
    t = _trace(engine, tids[1])
    assert (t.status, t.decided_how, t.decided_by) == ("rejected", "adjudication", users["reviewer"].id)
    assert claims.claim_next(engine, make_user(engine, "admin"), q.id) is None  # all done
    prog = queues.queue_progress(engine, users["admin"], q.id)
    assert prog["done"] == 5 and {m["username"]: m["annotations"] for m in prog["members"]} == {
        a1.username: 5, a2.username: 5}


def test_adjudicators_own_edit_is_the_final_text_and_not_an_annotator_vote(engine):
    from curation.export.rows import select_traces
    from curation.export.spec import ExportFilter, ExportOptions
    from curation.review.agreement import agreement

    users = make_users(engine)
    a1, a2 = users["annotator"], make_user(engine, "annotator")
    tids = make_traces(engine, 3)
    q = queues.create_queue(engine, users["admin"], "pair", {}, overlap=2, members=[a1.id, a2.id])
    for who, decision in ((a1, "approve"), (a2, "reject")):
        while (c := claims.claim_next(engine, who, q.id)) is not None:
            annotations.submit_annotation(engine, who, c.trace_id, decision=decision, trace_version=c.trace_version,
                                          queue_id=q.id)
    waiting, first = reading.adjudication_items(engine, users["reviewer"], limit=1)
    assert waiting == 3 and [i["trace_id"] for i in first] == [tids[0]]
    _, wrapped = reading.adjudication_items(engine, users["reviewer"], limit=3, after_id=tids[1])
    assert [i["trace_id"] for i in wrapped] == [tids[2], tids[0], tids[1]]  # "next" wraps to the start
    tid = tids[0]
    with pytest.raises(ValueError, match="approved"):
        annotations.adjudicate(engine, users["reviewer"], tid, "rejected", _trace(engine, tid).version,
                               edited_response="mine")
    with pytest.raises(ValueError, match="same as the model"):
        annotations.adjudicate(engine, users["reviewer"], tid, "approved", _trace(engine, tid).version,
                               edited_response="response 0")
    annotations.adjudicate(engine, users["reviewer"], tid, "approved", _trace(engine, tid).version,
                           edited_response="I can't help with that; here is a safer way.", behavior_label="refuse")
    ft = reading.final_text(engine, users["reviewer"], tid)
    assert (ft["status"], ft["response"], ft["edited"]) == ("approved", "I can't help with that; here is a safer "
                                                            "way.", True)
    rows = select_traces(engine, ExportFilter(), ExportOptions(), ["approved"])
    assert [r.id for r in rows] == [tid] and "here is a safer way" in rows[0].final
    people = agreement(engine, users["reviewer"], q.id, "decision")["annotators"]
    assert sorted(people) == sorted([a1.username, a2.username])  # the reviewer's edit is not a vote


def test_edit_keeps_original_and_undo(engine):
    users = make_users(engine)
    a = users["annotator"]
    make_traces(engine, 2)
    q = queues.create_queue(engine, users["admin"], "solo", {}, overlap=1, members=[a.id])
    c = claims.claim_next(engine, a, q.id)
    with pytest.raises(ValueError, match="needs_edit"):
        annotations.submit_annotation(engine, a, c.trace_id, decision="needs_edit", trace_version=c.trace_version,
                                 queue_id=q.id, edited_response="response 0")  # same as the model's: no edit
    res = annotations.submit_annotation(engine, a, c.trace_id, decision="needs_edit", trace_version=c.trace_version,
                                   queue_id=q.id, edited_response="I can't help with that, but here is why.")
    assert res.trace_status == "approved"
    ft = reading.final_text(engine, users["reviewer"], c.trace_id)
    assert ft["response"] == "I can't help with that, but here is why." and ft["original_response"] == "response 0"
    assert _trace(engine, c.trace_id).response == "response 0"
    assert "+I can't help" in reading.text_diff("response 0", ft["response"])
    # Undo right after: allowed (the decision is still the one this submission made); the trace comes back.
    assert annotations.undo_annotation(engine, a, res.annotation_id) == c.trace_id
    t = _trace(engine, c.trace_id)
    assert (t.status, t.decided_how, t.meta.get("final_annotation_id")) == ("pending", None, None)
    again = claims.claim_next(engine, a, q.id)
    assert again.trace_id == c.trace_id
    res2 = annotations.submit_annotation(engine, a, c.trace_id, decision="approve", trace_version=again.trace_version,
                                    queue_id=q.id)
    # Once someone else acts on the trace, undo is refused with the other change.
    annotations.bulk_decide(engine, users["admin"], {"statuses": ["approved"]}, "rejected", expected_count=1)
    with pytest.raises(ConflictError) as e:
        annotations.undo_annotation(engine, a, res2.annotation_id)
    assert e.value.other_change["action"] == "bulk" and e.value.other_change["actor"] == "admin"


def test_optimistic_lock_conflicts(engine):
    users = make_users(engine)
    a, rv = users["annotator"], users["reviewer"]
    tids = make_traces(engine, 3)
    q = queues.create_queue(engine, users["admin"], "two", {}, overlap=2, members=[a.id, rv.id])
    c = claims.claim_next(engine, a, q.id)
    # While the annotator looks at it, an admin rejects it in bulk: the save is refused and shows who did it.
    annotations.bulk_decide(engine, users["admin"], {"search": "prompt", "statuses": ["pending"]}, "rejected",
                       expected_count=3)
    with pytest.raises(ConflictError) as e:
        annotations.submit_annotation(engine, a, c.trace_id, decision="approve", trace_version=c.trace_version,
                                 queue_id=q.id)
    assert e.value.current["status"] == "rejected" and e.value.other_change["after"]["status"] == "rejected"
    assert not _count(engine, Annotation)
    # A bulk confirmation for a stale count changes nothing.
    with pytest.raises(ConflictError):
        annotations.bulk_decide(engine, users["admin"], {}, "approved", expected_count=2)
    assert {_trace(engine, t).status for t in tids} == {"rejected"}
    # Adjudication with a stale trace version.
    v = _trace(engine, tids[0]).version
    annotations.adjudicate(engine, rv, tids[0], "approved", v)
    with pytest.raises(ConflictError) as e:
        annotations.adjudicate(engine, users["admin"], tids[0], "rejected", v)
    assert e.value.other_change["actor"] == "reviewer" and _trace(engine, tids[0]).status == "approved"
    # Annotation edits in two tabs: the second save with the old version is refused.
    tids2 = make_traces(engine, 1, set_name="other")
    q2 = queues.create_queue(engine, users["admin"], "solo2", {"set_names": ["other"]}, overlap=2, members=[a.id])
    c2 = claims.claim_next(engine, a, q2.id)
    assert c2.trace_id == tids2[0]
    r = annotations.submit_annotation(engine, a, c2.trace_id, decision="approve", trace_version=c2.trace_version,
                                 queue_id=q2.id, comment="first")
    annotations.update_annotation(engine, a, r.annotation_id, r.annotation_version, comment="tab one")
    with pytest.raises(ConflictError) as e:
        annotations.update_annotation(engine, a, r.annotation_id, r.annotation_version, comment="tab two")
    assert e.value.current["comment"] == "tab one"
    with pytest.raises(PermissionDenied):
        annotations.update_annotation(engine, rv, r.annotation_id, 2, comment="not mine")


def _count(engine, model, *where):
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_audit_completeness(engine):
    """Every change to a trace or annotation has an event whose before/after match the states around it."""
    users = make_users(engine)
    a, rv, ad = users["annotator"], users["reviewer"], users["admin"]
    a2 = make_user(engine, "annotator")
    tids = make_traces(engine, 2)
    q = queues.create_queue(engine, ad, "audit", {}, overlap=2, members=[a.id, a2.id])

    def snap(tid):
        t = _trace(engine, tid)
        return {"status": t.status, "version": t.version, "decided_how": t.decided_how, "decided_by": t.decided_by}

    c, r1 = _annotate(engine, a, q, "approve")
    c2 = claims.claim_next(engine, a2, q.id)
    assert c2.trace_id == c.trace_id
    r2 = annotations.submit_annotation(engine, a2, c.trace_id, decision="reject", trace_version=c2.trace_version,
                                  queue_id=q.id)
    annotations.adjudicate(engine, rv, c.trace_id, "approved", r2.trace_version, final_annotation_id=r1.annotation_id)
    annotations.update_annotation  # (annotations on decided traces cannot change; covered in the lock test)
    annotations.bulk_decide(engine, ad, {"statuses": ["pending"]}, "rejected", expected_count=1)
    hist = trace_history(engine, rv, c.trace_id)
    trace_events = [e for e in hist if e["entity"] == "trace"]
    assert [e["action"] for e in trace_events] == ["review_started", "consensus", "adjudicate"]
    # Each event's before is the previous event's after; versions step by one; the last after is the row now.
    for prev, nxt in zip(trace_events, trace_events[1:]):
        assert nxt["before"] == prev["after"]
        assert nxt["after"]["version"] == nxt["before"]["version"] + 1
    assert trace_events[0]["before"]["status"] == "pending" and trace_events[0]["before"]["version"] == 1
    now = snap(c.trace_id)
    last = trace_events[-1]["after"]
    assert {k: last[k] for k in now} == now and last["final_annotation_id"] == r1.annotation_id
    ann_events = [e for e in hist if e["entity"] == "annotation"]
    assert [(e["action"], e["actor"], e["after"]["decision"]) for e in ann_events] == [
        ("create", a.username, "approve"), ("create", a2.username, "reject")]
    # The other trace: one bulk event, before pending v1, after rejected v2 by the admin.
    other = [t for t in tids if t != c.trace_id][0]
    ev = trace_history(engine, rv, other)
    assert [(e["action"], e["actor"], e["before"]["status"], e["after"]["status"], e["after"]["version"])
            for e in ev] == [("bulk", "admin", "pending", "rejected", 2)]
    # Undo leaves a delete event carrying the annotation as it was.
    q2 = queues.create_queue(engine, ad, "undo", {}, overlap=1, members=[a.id])
    make_traces(engine, 1, set_name="u")
    queues.refresh_queue(engine, ad, q2.id)
    c3, r3 = _annotate(engine, a, q2, "reject", comment="bad")
    annotations.undo_annotation(engine, a, r3.annotation_id)
    ev = trace_history(engine, rv, c3.trace_id)
    assert [(e["entity"], e["action"]) for e in ev] == [
        ("annotation", "create"), ("trace", "consensus"), ("annotation", "delete"),
        ("trace", "undo")]
    assert ev[2]["before"]["comment"] == "bad" and ev[2]["after"] is None
    assert ev[3]["after"]["status"] == "pending" and ev[3]["before"]["status"] == "rejected"
    # Nothing about traces or annotations changed without an event: counts of events equal version bumps.
    with Session(engine) as s:
        bumps = s.execute(select(func.sum(Trace.version - 1))).scalar_one()
        trace_events_n = s.execute(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.entity == "trace")).scalar_one()
    assert bumps == trace_events_n


def test_lease_expiry_and_skip(engine):
    users = make_users(engine)
    a1, a2 = users["annotator"], make_user(engine, "annotator")
    tids = make_traces(engine, 2)
    q = queues.create_queue(engine, users["admin"], "lease", {}, overlap=1, lease_seconds=60,
                            members=[a1.id, a2.id])
    past = utcnow() - timedelta(minutes=10)
    c = claims.claim_next(engine, a1, q.id, now=past)
    assert c.trace_id == tids[0]
    # a1's lease ran out: a2 gets the same first trace.
    assert claims.claim_next(engine, a2, q.id).trace_id == tids[0]
    # a1 skips trace 1; it goes back to the pool for others, and to a1 only once nothing else is left (not as
    # the page's prefetched next trace).
    c1 = claims.claim_next(engine, a1, q.id)
    assert c1.trace_id == tids[1]
    claims.skip(engine, a1, tids[1])
    assert _count(engine, Claim, Claim.kind == "skip") == 1
    assert [r["skipped"] for r in reading.activity(engine, users["admin"]) if r["user"] == a1.username] == [1]
    assert claims.claim_next(engine, a1, q.id, keep=(tids[0],)) is None
    assert claims.claim_next(engine, a1, q.id).trace_id == tids[1]
    # The expired lease holder's late submit is refused: a2 holds the only slot now.
    with pytest.raises(ConflictError, match="lease"):
        annotations.submit_annotation(engine, a1, tids[0], decision="approve", trace_version=1, queue_id=q.id)


def test_agreement_metrics(engine):
    users = make_users(engine)
    a, b = users["annotator"], make_user(engine, "annotator", "bob")
    make_traces(engine, 4)
    q = queues.create_queue(engine, users["admin"], "agree", {}, overlap=2, members=[a.id, b.id])
    da = ["approve", "approve", "reject", "reject"]
    db_ = ["approve", "reject", "reject", "reject"]
    for who, decisions in ((a, da), (b, db_)):
        for d in decisions:
            c = claims.claim_next(engine, who, q.id)
            annotations.submit_annotation(engine, who, c.trace_id, decision=d, trace_version=c.trace_version,
                                     queue_id=q.id, quality=4 if d == "approve" else 2)
    res = agr.agreement(engine, users["reviewer"], q.id, "decision")
    # Hand-computed: po = 3/4, pe = 1/2 -> kappa 0.5; Krippendorff nominal alpha = 1 - 0.25/(30/56).
    assert res["pairs"][0]["kappa"] == pytest.approx(0.5)
    assert res["alpha"] == pytest.approx(1 - 0.25 / (30 / 56))
    assert res["disagreement_rate"] == pytest.approx(0.25)
    assert res["confusion"]["annotator vs bob"]["approve"]["reject"] == 1
    assert agr.agreement(engine, users["reviewer"], q.id, "quality")["items_multi"] == 4
    with pytest.raises(ValueError, match="label"):
        agr.agreement(engine, users["reviewer"], q.id, "nope")


def test_filter_validation_names_field(engine):
    users = make_users(engine)
    with pytest.raises(ValueError, match="behaviors"):
        queues.create_queue(engine, users["admin"], "bad", {"behaviors": ["maybe"]})
    with pytest.raises(ValueError, match="unknown field"):
        queues.create_queue(engine, users["admin"], "bad", {"colour": "red"})
    with pytest.raises(ValueError, match="quality"):
        annotations.submit_annotation(engine, users["admin"], 1, decision="approve", trace_version=1, quality=9)


def test_cli_queues_and_users(sqlite_url, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    eng = make_engine(sqlite_url)
    users = make_users(eng)
    make_traces(eng, 2)
    run = CliRunner().invoke
    r = run(app, ["queues", "create", "cliq", "--as", "admin", "--overlap", "2", "--member", "annotator"])
    assert r.exit_code == 0, r.output
    r = run(app, ["queues", "create", "x", "--as", "annotator"])
    assert r.exit_code == 2 and "may not manage queues" in r.output
    r = run(app, ["queues", "create", "y", "--as", "admin", "--filter", '{"behaviors": ["nope"]}'])
    assert r.exit_code == 2 and "behaviors" in r.output
    r = run(app, ["queues", "progress", "1", "--as", "admin"])
    assert r.exit_code == 0 and "0/2 decided" in r.output
    r = run(app, ["queues", "progress", "cliq"])  # by name, as the first admin (no --as)
    assert r.exit_code == 0 and "cliq: 0/2 decided" in r.output, r.output
    r = run(app, ["queues", "progress", "nope"])
    assert r.exit_code == 2 and "no queue named 'nope'" in r.output
    r = run(app, ["queues", "list"], terminal_width=200)
    assert r.exit_code == 0 and "cliq" in r.output
    r = run(app, ["queues", "create", "[q] [bold]x[/bold]", "--as", "admin"])
    assert r.exit_code == 0, r.output
    r = run(app, ["queues", "list", "--as", "admin"], terminal_width=200)
    assert r.exit_code == 0 and "[q] [bold]x[/bold]" in r.output  # data in a table is never Rich markup
    r = run(app, ["users", "set-role", "annotator", "--role", "reviewer", "--as", "admin"])
    assert r.exit_code == 0
    assert [u.role for u in list_users(eng) if u.id == users["annotator"].id] == ["reviewer"]
    eng.dispose()


def test_auto_decisions_go_through_the_one_status_change(engine):
    """The loop's automatic filter decides traces through the review module's status change: decision fields,
    version, the queue item's open flag and an audit event, exactly as a person's decision does."""
    from db.models import QueueItem

    users = make_users(engine)
    tids = make_traces(engine, 3)
    q = queues.create_queue(engine, users["admin"], "auto", {}, members=[users["annotator"].id])
    with pytest.raises(PermissionDenied):
        annotations.auto_decide(engine, users["annotator"], {tids[0]: "approved"})
    changed = annotations.auto_decide(engine, users["reviewer"], {tids[0]: "approved", tids[1]: "rejected",
                                                                  tids[2]: "pending"})
    assert changed == 2
    with Session(engine) as s:
        t0, t1, t2 = (s.get(Trace, t) for t in tids)
        assert (t0.status, t0.decided_how, t0.decided_by, t0.version) == ("approved", "auto", users["reviewer"].id, 2)
        assert t1.status == "rejected" and t2.status == "pending" and t2.version == 1
        is_open = dict(s.execute(select(QueueItem.trace_id, QueueItem.is_open).where(QueueItem.queue_id == q.id)).all())
        assert is_open == {tids[0]: False, tids[1]: False, tids[2]: True}
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.entity == "trace",
                                                            AuditEvent.entity_id == tids[0])).scalars().all()
        assert actions == ["auto_filter"]
    assert annotations.auto_decide(engine, None, {tids[2]: "approved"}) == 1  # the local operator (CLI)


def test_event_changes_name_only_what_changed():
    from curation.review.audit import event_changes

    ev = {"before": {"status": "pending", "version": 1, "decided_by": None, "comment": ""},
          "after": {"status": "approved", "version": 2, "decided_by": 7, "comment": ""}}
    assert event_changes(ev) == [("status", "pending", "approved"), ("decided_by", None, 7)]
    created = {"before": None, "after": {"id": 3, "trace_id": 1, "decision": "approve", "harm_categories": []}}
    assert event_changes(created) == [("decision", None, "approve")]


@pytest.mark.postgres
def test_one_user_undoing_in_two_tabs_at_once_gets_a_clear_answer_not_a_stale_row(pg_url, monkeypatch):
    """The second tab read the annotation before the first undid it; its undo (or edit) then finds the annotation
    gone and says so. Before, the undo ran twice (a second delete event and claim) and the edit failed with
    StaleDataError (an UPDATE that matched no row). Real PostgreSQL, two threads."""
    import threading

    engine = make_engine(pg_url)
    users = make_users(engine)
    a = users["annotator"]
    make_traces(engine, 1)
    q = queues.create_queue(engine, users["admin"], "tabs", {}, overlap=2, members=[a.id])
    c = claims.claim_next(engine, a, q.id)
    res = annotations.submit_annotation(engine, a, c.trace_id, decision="approve", trace_version=c.trace_version,
                                        queue_id=q.id)
    read, first_done, got = threading.Event(), threading.Event(), {}
    real_lock = annotations._lock_trace

    def late_lock(s, trace_id):
        if threading.current_thread().name == "second" and not read.is_set():
            read.set()
            first_done.wait(30)
        return real_lock(s, trace_id)

    monkeypatch.setattr(annotations, "_lock_trace", late_lock)

    def in_second_tab(call):
        read.clear()
        first_done.clear()

        def run():
            try:
                got["second"] = call()
            except Exception as e:  # what the page would show
                got["second"] = e

        t = threading.Thread(target=run, name="second")
        t.start()
        assert read.wait(30)
        return t

    tab = in_second_tab(lambda: annotations.undo_annotation(engine, a, res.annotation_id))
    assert annotations.undo_annotation(engine, a, res.annotation_id) == c.trace_id
    first_done.set()
    tab.join(30)
    assert isinstance(got["second"], ValueError) and "already undone" in str(got["second"]), got
    res = annotations.submit_annotation(engine, a, c.trace_id, decision="approve", trace_version=c.trace_version,
                                        queue_id=q.id)
    tab = in_second_tab(lambda: annotations.update_annotation(engine, a, res.annotation_id, 1, comment="typo"))
    annotations.undo_annotation(engine, a, res.annotation_id)
    first_done.set()
    tab.join(30)
    assert isinstance(got["second"], ValueError) and "does not exist" in str(got["second"]), got
    with Session(engine) as s:
        assert s.execute(select(func.count(Annotation.id))).scalar_one() == 0
        assert s.execute(select(func.count(Claim.id)).where(Claim.user_id == a.id)).scalar_one() == 1
