"""Sessions that end, throttled sign-in, and a first-run form that creates one admin however many people submit it,
on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import curation.auth as auth
from core.errors import LoginThrottled, PermissionDenied
from curation.auth import authenticate, change_password, create_first_admin, create_user, update_user
from curation.sessions import end_session, session_user, start_session
from db.models import AuditEvent, User, utcnow


def test_a_token_taken_before_sign_out_does_not_sign_in_after(engine):
    u = create_user(engine, "alice", "correct horse", "annotator")
    token = start_session(engine, u.id)
    assert session_user(engine, token) == u.id
    end_session(engine, token)
    assert session_user(engine, token) is None
    assert session_user(engine, "garbage") is None and session_user(engine, None) is None
    assert session_user(engine, start_session(engine, u.id, ttl_s=-1)) is None  # expired


def test_deactivation_and_password_change_end_every_session(engine):
    admin = create_user(engine, "root", "password123", "admin")
    u = create_user(engine, "alice", "correct horse", "annotator")
    t1, t2 = start_session(engine, u.id), start_session(engine, u.id)
    with pytest.raises(PermissionDenied, match="current password"):
        change_password(engine, u, u.id, "new horse 1", current_password="wrong")
    assert session_user(engine, t1) == u.id  # a refused change ends nothing
    change_password(engine, u, u.id, "new horse 1", current_password="correct horse")
    assert session_user(engine, t1) is None and session_user(engine, t2) is None
    assert authenticate(engine, "alice", "new horse 1").id == u.id
    with pytest.raises(PermissionDenied):  # an annotator may not reset someone else's password
        change_password(engine, u, admin.id, "taken over")
    t3 = start_session(engine, u.id)
    update_user(engine, admin, u.id, is_active=False)
    assert session_user(engine, t3) is None
    update_user(engine, admin, u.id, is_active=True)
    assert session_user(engine, t3) is None  # reactivation does not bring an old session back


def test_wrong_passwords_throttle_the_name_then_time_lets_it_in(engine, monkeypatch):
    create_user(engine, "alice", "correct horse", "annotator")
    for _ in range(auth.FREE_FAILURES):
        assert authenticate(engine, "alice", "wrong", client="10.0.0.1") is None
    with pytest.raises(LoginThrottled) as e:  # the right password is refused too, from any client
        authenticate(engine, "alice", "correct horse", client="10.0.0.2")
    assert 0 < e.value.retry_after_s <= auth.BASE_DELAY_S
    with Session(engine) as s:
        events = s.execute(select(AuditEvent.action, AuditEvent.after).where(AuditEvent.entity == "login")).all()
    assert [a for a, _ in events].count("login_failed") == auth.FREE_FAILURES
    assert events[-1][0] == "login_throttled" and events[0][1] == {"username": "alice", "client": "10.0.0.1"}
    later = utcnow() + timedelta(seconds=auth.BASE_DELAY_S + 1)
    monkeypatch.setattr(auth, "utcnow", lambda: later)
    assert authenticate(engine, "alice", "correct horse", client="10.0.0.2").username == "alice"
    # A success resets the count: one more failure is not throttled.
    assert authenticate(engine, "alice", "wrong", client="10.0.0.3") is None
    assert authenticate(engine, "alice", "correct horse", client="10.0.0.3") is not None


def test_the_delay_grows_with_each_further_failure(engine, monkeypatch):
    create_user(engine, "alice", "correct horse", "annotator")
    now = utcnow()
    monkeypatch.setattr(auth, "utcnow", lambda: now)
    waits = []
    for _ in range(3):
        for _ in range(auth.FREE_FAILURES if not waits else 1):
            assert authenticate(engine, "alice", "wrong") is None
        with pytest.raises(LoginThrottled) as e:
            authenticate(engine, "alice", "wrong")
        waits.append(e.value.retry_after_s)
        now = now + timedelta(seconds=e.value.retry_after_s + 1)
    assert waits[1] >= 2 * waits[0] - 1 and waits[2] >= 2 * waits[1] - 1


def test_user_names_are_normalised_visible_within_length_and_unlike_existing_ones(engine):
    create_user(engine, "admin", "password123", "admin")
    for look_alike in ("Admin", "\u0430dmin", "ADMIN ", "adm1n"):  # case, Cyrillic a, trailing space, digit one
        with pytest.raises(ValueError, match="already exists|looks like the existing user 'admin'"):
            create_user(engine, look_alike, "password123", "annotator")
    for hidden in ("ad\u200bmin2", "\u202enimda", "bob\x00", "bob\ud800", "bob\u2028x"):
        with pytest.raises(ValueError, match="contains U\\+"):
            create_user(engine, hidden, "password123", "annotator")
    with pytest.raises(ValueError, match="101 characters; at most 100"):
        create_user(engine, "b" * 101, "password123", "annotator")
    # NFKC: the full-width spelling is stored as the plain one and signs in either way.
    wide = create_user(engine, "\uff43\uff59\uff44", "password123", "annotator")
    assert wide.username == "cyd"
    assert authenticate(engine, "cyd", "password123").id == wide.id
    assert authenticate(engine, "\uff43\uff59\uff44", "password123").id == wide.id
    longest = create_user(engine, "e" * 100, "password123", "annotator")
    assert authenticate(engine, "e" * 100, "password123").id == longest.id
    # Names no account can have are wrong names, on both databases, not errors.
    for odd in ("bob\x00", "bob\ud800", "e" * 150, "\u202enimda"):
        assert authenticate(engine, odd, "password123") is None
    with Session(engine) as s:
        names = set(s.execute(select(User.username)).scalars())
    assert names == {"admin", "cyd", "e" * 100}


def test_one_client_guessing_many_names_is_throttled_and_its_own_account_does_not_reset_it(engine):
    create_user(engine, "alice", "correct horse", "annotator")
    create_user(engine, "mallory", "mallory pass", "annotator")
    for i in range(auth.CLIENT_FREE_FAILURES):
        assert authenticate(engine, f"guess{i % 4}-{i}", "pw", client="10.6.6.6") is None
        if i % 4 == 3:  # spraying four names at a time, signing in as oneself in between
            assert authenticate(engine, "mallory", "mallory pass", client="10.6.6.7") is not None
    with pytest.raises(LoginThrottled):
        authenticate(engine, "mallory", "mallory pass", client="10.6.6.6")
    assert authenticate(engine, "alice", "correct horse", client="10.0.0.9") is not None


def test_a_fresh_forwarded_header_earns_no_fresh_attempts(engine):
    """Streamlit reports X-Forwarded-For as the client's address: unless a trusted proxy sets it, every forwarded
    request is throttled under one key, so spoofing a new address per guess is still throttled."""
    create_user(engine, "mallory", "mallory pass", "annotator")
    keys = {auth.throttle_client(f"10.9.0.{i}", {"X-Forwarded-For": f"10.9.0.{i}"}, trust_forwarded=False)
            for i in range(auth.CLIENT_FREE_FAILURES + 1)}
    assert keys == {auth.UNTRUSTED_FORWARD}
    for i in range(auth.CLIENT_FREE_FAILURES):
        ip = f"10.9.0.{i}"
        assert authenticate(engine, f"guess-{i}", "pw", client=auth.throttle_client(
            ip, {"x-real-ip": ip}, trust_forwarded=False)) is None
    with pytest.raises(LoginThrottled):
        authenticate(engine, "mallory", "mallory pass", client=auth.throttle_client(
            "10.9.9.9", {"Forwarded": "for=10.9.9.9"}, trust_forwarded=False))
    assert auth.throttle_client("10.9.9.9", {"X-Forwarded-For": "10.9.9.9"}, trust_forwarded=True) == "10.9.9.9"
    assert auth.throttle_client("127.0.0.1", {"Host": "x"}, trust_forwarded=False) == "127.0.0.1"


def test_parallel_guesses_do_not_slip_under_the_limit(engine):
    create_user(engine, "victim", "correct horse", "annotator")
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def guess() -> None:
        barrier.wait()
        try:
            outcomes.append("checked" if authenticate(engine, "victim", "wrong", client="10.1.1.1") is None
                            else "in")
        except LoginThrottled:
            outcomes.append("throttled")

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("checked") == auth.FREE_FAILURES and outcomes.count("throttled") == 12 - auth.FREE_FAILURES


def test_simultaneous_first_run_forms_create_one_admin(engine):
    barrier = threading.Barrier(4)
    results: list[object] = []

    def submit(i: int) -> None:
        barrier.wait()
        try:
            results.append(create_first_admin(engine, f"admin{i}", "password123"))
        except (PermissionDenied, ValueError) as e:
            results.append(e)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as s:
        assert s.execute(select(func.count(User.id))).scalar_one() == 1
    assert sum(isinstance(r, User) for r in results) == 1
    assert all("already exists" in str(r) for r in results if not isinstance(r, User))


def test_an_annotator_cannot_decide_traces_outside_a_claim(engine):
    """Before: any annotator could call submit_annotation(queue_id=None, source="argilla") and approve any trace."""
    from curation.review import annotations, claims, queues
    from tests.factories import make_traces, make_users

    users = make_users(engine)
    outsider, member = users["annotator"], create_user(engine, "member", "password123", "annotator")
    tids = make_traces(engine, 3)
    q = queues.create_queue(engine, users["admin"], "q", {}, overlap=1, members=[member.id])
    for source in ("argilla", "ui"):
        with pytest.raises(PermissionDenied):
            annotations.submit_annotation(engine, outsider, tids[0], decision="approve", trace_version=1,
                                          source=source)
    with pytest.raises(PermissionDenied, match="member"):
        annotations.submit_annotation(engine, outsider, tids[0], decision="approve", trace_version=1, queue_id=q.id)
    with pytest.raises(PermissionDenied, match="no claim"):  # a member, but the trace was never claimed
        annotations.submit_annotation(engine, member, tids[0], decision="approve", trace_version=1, queue_id=q.id)
    with pytest.raises(PermissionDenied):  # the pull's authority must be an admin
        annotations.submit_annotation(engine, outsider, tids[0], decision="approve", trace_version=1,
                                      source="argilla", authority=member)
    c = claims.claim_next(engine, member, q.id)
    assert annotations.submit_annotation(engine, member, c.trace_id, decision="approve", trace_version=1,
                                         queue_id=q.id).trace_status == "approved"
    res = annotations.submit_annotation(engine, outsider, tids[2], decision="reject", trace_version=1,
                                        source="argilla", authority=users["admin"])
    assert res.trace_status == "rejected"


def test_the_data_directory_and_a_new_database_file_are_owner_only(tmp_path, monkeypatch):
    import os
    import stat

    from core.settings import get_settings
    from db.engine import make_engine
    from db.migrate import upgrade

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # made by hand, readable by everyone
    monkeypatch.setenv("RATIONAL_HOME", str(home))
    assert get_settings().home() == home and stat.S_IMODE(os.stat(home).st_mode) == 0o700
    db = home / "rational.db"
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    eng.dispose()


def test_my_settings_page_changes_the_password_and_ends_sessions(app_db):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    u = create_user(app_db, "alice", "correct horse", "annotator")
    token = start_session(app_db, u.id)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app/web/views/settings.py"),
                           default_timeout=120)
    at.session_state["user_id"] = u.id
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["Current password"].set_value("correct horse")
    fields["New password (8+ characters)"].set_value("battery staple")
    fields["Repeat the new password"].set_value("battery staple")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert not at.exception and "Password changed" in at.success[-1].value
    assert authenticate(app_db, "alice", "battery staple") is not None and session_user(app_db, token) is None


def test_a_busy_database_gives_a_retry_message_not_a_traceback(tmp_path, monkeypatch):
    """SQLite only (one writer at a time): another connection holds the write lock, as a large import does, while
    someone signs in. The page waits the busy timeout (30 s), then says to try again."""
    import sqlite3
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from db.engine import make_engine
    from db.migrate import upgrade

    db = tmp_path / "busy.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng)
    create_user(eng, "alice", "correct horse", "annotator")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app/web/streamlit_app.py"),
                           default_timeout=120).run()
    next(t for t in at.text_input if t.label == "User name").set_value("alice")
    next(t for t in at.text_input if t.label == "Password").set_value("correct horse")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        at.button[0].click().run()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert not at.exception, [e.value for e in at.exception]
    assert "database is busy" in at.warning[0].value
    eng.dispose()


def test_model_text_in_the_loop_report_is_text_not_markup():
    """Home renders the loop report with st.markdown: sample prompts and replies must not become images or links."""
    from markdown_it import MarkdownIt

    from workflows.loop_report import render_report

    evil = "hi ![x](http://attacker.example/p.png) [y](http://attacker.example) <img src=x> $\\href{u}{v}$"
    res = {"config": {}, "samples": {"refuse": [{"status": "approved", "trace_id": 1, "parse_ok": True,
                                                 "prompt": evil, "reasoning": evil, "response": evil}]},
           "error": evil, "notes": [evil]}
    html = MarkdownIt("commonmark").render(render_report(res))
    assert "<img" not in html and "<a " not in html and "attacker.example" in html


def test_a_claim_counts_only_in_its_own_open_queue_and_a_removed_member_cannot_change_their_annotation(engine):
    from curation.review import annotations, claims, queues
    from tests.factories import make_traces, make_users

    users = make_users(engine)
    a = users["annotator"]
    tids = make_traces(engine, 1)
    wide = queues.create_queue(engine, users["admin"], "wide", {}, overlap=3, members=[a.id])
    solo = queues.create_queue(engine, users["admin"], "solo", {}, overlap=1, members=[a.id])
    c = claims.claim_next(engine, a, wide.id)
    with pytest.raises(PermissionDenied, match="no claim"):  # overlap 1 would let one person decide the trace
        annotations.submit_annotation(engine, a, c.trace_id, decision="approve", trace_version=1, queue_id=solo.id)
    queues.update_queue(engine, users["admin"], wide.id, wide.version, is_active=False)
    with pytest.raises(PermissionDenied, match="paused"):
        annotations.submit_annotation(engine, a, c.trace_id, decision="approve", trace_version=1, queue_id=wide.id)
    with Session(engine) as s:
        version = s.get(type(wide), wide.id).version
    queues.update_queue(engine, users["admin"], wide.id, version, is_active=True)
    res = annotations.submit_annotation(engine, a, tids[0], decision="approve", trace_version=1, queue_id=wide.id)
    assert res.trace_status == "in_review"
    with Session(engine) as s:
        version = s.get(type(wide), wide.id).version
    queues.update_queue(engine, users["admin"], wide.id, version, members=[])
    with pytest.raises(PermissionDenied, match="member"):
        annotations.update_annotation(engine, a, res.annotation_id, res.annotation_version, decision="reject")
    with pytest.raises(PermissionDenied, match="member"):
        annotations.undo_annotation(engine, a, res.annotation_id)


def test_recording_a_generation_run_is_checked_on_the_acting_user(engine):
    from curation.generation.config import GenerationConfig, Selection
    from curation.generation.runs import create_run
    from db.models import GenerationRun
    from tests.factories import make_users

    users = make_users(engine)
    with pytest.raises(PermissionDenied):
        create_run(engine, GenerationConfig(model="tiny"), Selection(set_names=["x"]), created_by=users["annotator"].id)
    with Session(engine) as s:
        assert s.execute(select(func.count(GenerationRun.id))).scalar_one() == 0
    assert create_run(engine, GenerationConfig(model="tiny"), Selection(set_names=["x"]),
                      created_by=users["reviewer"].id).id


def test_new_annotators_see_distressing_categories_behind_a_warning_until_they_choose(app_db):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from curation.review import preferences, queues
    from tests.factories import make_traces, make_users

    users = make_users(app_db)
    make_traces(app_db, 1, category="Suicide, self-harm")
    queues.create_queue(app_db, users["admin"], "q", {}, overlap=1, members=[users["annotator"].id])
    review = Path(__file__).resolve().parents[1] / "app/web/views/review.py"
    at = AppTest.from_file(str(review), default_timeout=120)
    at.session_state["user_id"] = users["annotator"].id
    at.run()
    assert not at.exception and at.expander[0].label.startswith("Content warning: Suicide, self")
    assert preferences.get_settings(app_db, users["annotator"])["blur_categories"] == ["Suicide, self-harm"]
    preferences.save_settings(app_db, users["annotator"], [], 0)  # turned off
    at = AppTest.from_file(str(review), default_timeout=120)
    at.session_state["user_id"] = users["annotator"].id
    at.run()
    assert not at.exception and not [e for e in at.expander if e.label.startswith("Content warning")]


def test_an_admin_cannot_demote_or_deactivate_themself_so_an_admin_always_remains(engine):
    from tests.factories import make_user, make_users

    users = make_users(engine)
    admin = users["admin"]
    for change in ({"is_active": False}, {"role": "reviewer"}):
        with pytest.raises(ValueError, match="your own admin rights"):
            update_user(engine, admin, admin.id, **change)
    other = make_user(engine, "admin")
    update_user(engine, admin, other.id, is_active=False)  # another admin: allowed, this one stays
    with pytest.raises(ValueError, match="your own admin rights"):
        update_user(engine, admin, admin.id, is_active=False)  # now the last active admin
