"""Job rows and the worker: atomic claiming (threads and processes), reaping, cancel, import jobs end to end."""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session

from app.worker import Worker, load_job_kinds
from db import jobs as jobrows
from db.engine import make_engine
from db.jobs import JOB_KINDS, JobCancelled, JobContext, claim_next, enqueue, get_job, reap_stale, request_cancel
from db.models import Job, Prompt, PromptSet, utcnow

N_JOBS = 40


def _drain(engine, worker_id: str) -> list[int]:
    """Claim until the queue is empty; a None while others still claim is retried."""
    got = []
    while True:
        job = claim_next(engine, worker_id)
        if job is not None:
            assert job.status == "running" and job.worker_id == worker_id
            got.append(job.id)
            continue
        if jobrows.job_status_counts(engine).get("queued", 0) == 0:
            return got


def _assert_each_claimed_once(engine, ids: list[int], claims: list[tuple[str, int]]):
    per_job = Counter(job_id for _w, job_id in claims)
    assert sorted(per_job) == sorted(ids)
    assert set(per_job.values()) == {1}, {j: n for j, n in per_job.items() if n != 1}
    with Session(engine) as s:
        rows = {j.id: j for j in s.execute(select(Job)).scalars()}
    for worker_id, job_id in claims:  # the row names the worker that got it, and was claimed once
        assert rows[job_id].worker_id == worker_id
        assert rows[job_id].status == "running" and rows[job_id].attempts == 1


def test_claim_next_is_atomic_across_threads(engine):
    ids = [enqueue(engine, "noop", {"i": i}).id for i in range(N_JOBS)]
    claims: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            start.wait()
            claims.extend((f"t{k}", j) for j in _drain(engine, f"t{k}"))
        except BaseException as e:  # surfaced below: "database is locked" used to escape here on SQLite
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    _assert_each_claimed_once(engine, ids, claims)
    assert claim_next(engine, "late") is None


def _claim_in_child(url: str, k: int, start, out) -> None:
    eng = make_engine(url)
    start.wait()
    try:
        out.put((k, _drain(eng, f"p{k}"), None))
    except BaseException as e:
        out.put((k, [], repr(e)))
    finally:
        eng.dispose()


def test_claim_next_is_atomic_across_processes(engine, db_url):
    ids = [enqueue(engine, "noop", {"i": i}).id for i in range(N_JOBS)]
    engine.dispose()  # no inherited connections in the children
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(db_url, k, start, out)) for k in range(8)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [r[2] for r in results if r[2]] == []
    claims = [(f"p{k}", j) for k, got, _ in results for j in got]
    _assert_each_claimed_once(engine, ids, claims)


def test_claim_filters_by_kind_and_order(engine):
    a = enqueue(engine, "alpha")
    b = enqueue(engine, "beta")
    a2 = enqueue(engine, "alpha")
    assert claim_next(engine, "w", kinds=["beta"]).id == b.id
    assert claim_next(engine, "w", kinds=["beta"]) is None
    assert [claim_next(engine, "w").id, claim_next(engine, "w").id] == [a.id, a2.id]


def test_a_job_that_requires_a_label_goes_only_to_a_worker_with_it(engine):
    from core.errors import UserError

    gpu = enqueue(engine, "alpha", requires_label="GPU ")
    plain = enqueue(engine, "alpha")
    assert get_job(engine, gpu.id).requires_label == "gpu"
    assert claim_next(engine, "cpu-worker").id == plain.id  # the older gpu job is skipped, not blocking
    assert claim_next(engine, "cpu-worker", labels=["fast"]) is None
    assert claim_next(engine, "gpu-worker", kinds=["alpha"], labels=["fast", "gpu"]).id == gpu.id
    with pytest.raises(UserError, match="worker label"):
        enqueue(engine, "alpha", requires_label="gpu; drop table")


def test_a_queued_job_says_why_it_waits(engine):
    first, second = enqueue(engine, "alpha"), enqueue(engine, "alpha", requires_label="gpu")
    idle = jobrows.waiting_reason(engine, get_job(engine, second.id))
    assert "1 job ahead" in idle and "no worker is running" in idle and "--label gpu" in idle
    assert claim_next(engine, "w1").id == first.id
    jobrows.heartbeat(engine, first.id)
    busy = jobrows.waiting_reason(engine, get_job(engine, second.id))
    assert f"1 worker is busy with job {first.id} (alpha)" in busy and "ahead" not in busy


def test_worker_kinds_are_checked_and_aliased(engine):
    from core.errors import UserError

    w = Worker(engine, kinds=["train", "eval"], labels=["gpu"])
    assert w.kinds == ["evaluate", "train"] and w.labels == ["gpu"] and w.worker_id.endswith("[gpu]")
    with pytest.raises(UserError, match="unknown job kind"):
        Worker(engine, kinds=["trian"])


def _make_stale(engine, job_id: int, seconds: float) -> None:
    from datetime import timedelta

    with engine.begin() as c:
        c.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_reap_stale_fails_dead_jobs_and_requeues_resumable(engine):
    dead = enqueue(engine, "noop", resumable=False)
    again = enqueue(engine, "noop", resumable=True)
    alive = enqueue(engine, "noop")
    for _ in range(3):
        claim_next(engine, "w-dead")
    _make_stale(engine, dead.id, 600)
    _make_stale(engine, again.id, 600)
    reaped = reap_stale(engine, timeout_s=60)
    assert sorted(reaped) == sorted([dead.id, again.id])
    d, r, a = (get_job(engine, j.id) for j in (dead, again, alive))
    assert d.status == "failed" and "no heartbeat" in d.error and "w-dead" in d.error and d.finished_at
    assert r.status == "queued" and r.worker_id is None and "re-queued" in r.message
    assert a.status == "running"
    assert reap_stale(engine, timeout_s=60) == []
    # The re-queued job is claimable again and counts the second attempt.
    again2 = claim_next(engine, "w2")
    assert again2.id == again.id and again2.attempts == 2


def _claim_and_die(url: str) -> None:
    eng = make_engine(url)
    claim_next(eng, "doomed-worker")
    os._exit(0)  # no finish(), no more heartbeats: the worker "crashed"


def test_a_worker_that_died_is_reaped(engine, db_url):
    job = enqueue(engine, "noop")
    engine.dispose()
    p = mp.get_context("fork").Process(target=_claim_and_die, args=(db_url,))
    p.start()
    p.join(timeout=60)
    assert get_job(engine, job.id).status == "running"
    time.sleep(1.2)
    Worker(engine, stale_after_s=1.0).run(once=True)  # a live worker reaps before it claims
    j = get_job(engine, job.id)
    assert j.status == "failed" and "doomed-worker" in j.error and "no heartbeat" in j.error


def test_cancel_a_queued_job(engine):
    job = enqueue(engine, "noop")
    request_cancel(engine, job.id)
    j = get_job(engine, job.id)
    assert j.status == "cancelled" and j.finished_at is not None
    assert claim_next(engine, "w") is None


def test_cancel_a_running_job_is_seen_by_its_context(engine):
    enqueue(engine, "noop")
    job = claim_next(engine, "w")
    ctx = JobContext(engine, job)
    ctx.check_cancel()  # nothing requested yet
    request_cancel(engine, job.id)
    assert get_job(engine, job.id).status == "running"  # running jobs stop at their next check
    assert jobrows.heartbeat(engine, job.id) is True
    with pytest.raises(JobCancelled):
        ctx.check_cancel()


def test_every_job_kind_is_in_the_one_table_and_loads_on_first_use():
    """The table names each kind's module; that module registers exactly its kinds, a process that imported none of
    them still runs any kind (loaded on first use), and a kind registered from elsewhere is refused at import."""
    import subprocess
    import sys

    from db.jobs import HANDLER_MODULES, register_job_kind

    assert set(load_job_kinds()) >= set(HANDLER_MODULES)
    assert all(JOB_KINDS[k].handler.__module__ == m for k, m in HANDLER_MODULES.items())
    probe = ("import sys; from db import jobs; assert 'training.jobs' not in sys.modules; "
             "k = jobs.job_kind('train'); assert k and k.name == 'train' and 'training.jobs' in sys.modules; "
             "assert jobs.job_kind('nope') is None")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).returncode == 0
    with pytest.raises(LookupError, match="add it to db.jobs.HANDLER_MODULES"):
        register_job_kind("stray")(lambda ctx: None)


def _csv(tmp_path, rows, name="p.csv"):
    import csv

    path = tmp_path / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "label", "type"])
        w.writerows(rows)
    return path


def _import_config(**kw):
    from curation.prompts.importer import ImportConfig

    base = dict(set_name="jobset", mapping={"text": "prompt", "category": "type"}, behavior_column="label",
                behavior_map={"safe": "comply", "unsafe": "refuse"}, split="eval")
    base.update(kw)
    return ImportConfig(**base).to_dict()


def _prompt_count(engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count(Prompt.id))).scalar()


def test_worker_runs_an_import_job_end_to_end(engine, tmp_path):
    rows = [[f"prompt number {i}", "safe" if i % 3 else "unsafe", "t"] for i in range(30)]
    rows.append(["prompt number 0", "unsafe", "t"])  # a duplicate
    path = _csv(tmp_path, rows)
    job = enqueue(engine, "import", {"path": str(path), "config": _import_config()})
    assert Worker(engine, heartbeat_s=0.2).run(once=True) == 1
    j = get_job(engine, job.id)
    assert j.status == "succeeded", (j.error, j.log_tail)
    assert j.progress_total == 31 and j.progress_done == 31  # valid rows, the duplicate included
    assert j.result["inserted"] == 30 and j.result["duplicates"] == 1 and j.result["invalid"] == 0
    assert j.result["rows_read"] == 31 and j.result["import_id"]
    assert "30 inserted" in j.log_tail
    assert _prompt_count(engine) == 30


def test_all_or_nothing_import_job_with_bad_rows_fails_with_the_report(engine, tmp_path):
    path = _csv(tmp_path, [["fine prompt", "safe", "t"], ["bad label prompt", "maybe", "t"], ["", "safe", "t"]])
    job = enqueue(engine, "import", {"path": str(path), "config": _import_config(all_or_nothing=True)})
    Worker(engine).run(once=True)
    j = get_job(engine, job.id)
    assert j.status == "failed" and "all-or-nothing" in j.error
    assert j.result["inserted"] == 0 and j.result["invalid"] == 2
    by_line = {e["line"]: e for e in j.result["errors"]}
    assert by_line[3]["field"] == "label" and "maybe" in by_line[3]["message"]
    assert by_line[4]["field"] == "prompt" and by_line[3]["file"] == str(path)
    assert _prompt_count(engine) == 0
    with Session(engine) as s:
        assert s.execute(select(PromptSet).where(PromptSet.name == "jobset")).first() is None


def test_run_job_here_is_the_workers_runner_and_keeps_a_failed_jobs_report(engine, tmp_path):
    """--wait runs exactly its own job through the same runner as the worker: a failed all-or-nothing import
    keeps its row errors on the job (the CLI's old runner dropped them), and other queued jobs stay queued."""
    from app.worker import load_job_kinds
    from db.jobs import JobNotQueued, run_job_here

    load_job_kinds()
    path = _csv(tmp_path, [["fine prompt", "safe", "t"], ["bad label prompt", "maybe", "t"]])
    other = enqueue(engine, "import_builtin", {"name": "simplesafetytests"})
    job = enqueue(engine, "import", {"path": str(path), "config": _import_config(all_or_nothing=True)})
    j = run_job_here(engine, job.id)
    assert j.status == "failed" and j.worker_id.startswith("cli:")
    assert j.result["invalid"] == 1 and j.result["errors"][0]["field"] == "label"
    assert get_job(engine, other.id).status == "queued"
    with pytest.raises(JobNotQueued):
        run_job_here(engine, job.id)


def test_import_job_for_a_missing_file_fails_with_the_reason(engine, tmp_path):
    job = enqueue(engine, "import", {"path": str(tmp_path / "nope.csv"), "config": _import_config()})
    Worker(engine).run(once=True)
    j = get_job(engine, job.id)
    assert j.status == "failed" and "nope.csv" in j.error and "not found" in j.error


def test_worker_runs_an_import_builtin_job(engine):
    job = enqueue(engine, "import_builtin", {"name": "simplesafetytests"})
    Worker(engine).run(once=True)
    j = get_job(engine, job.id)
    assert j.status == "succeeded", j.error
    assert j.result["inserted"] == 100 and j.result["invalid"] == 0


def test_a_failing_handler_fails_its_job_not_the_worker(engine, monkeypatch):
    def boom(ctx, **params):
        ctx.progress(1, 2, "half way", force=True)
        raise RuntimeError(f"handler broke on {params['x']}")

    Worker(engine)  # loads the registry before we add to it
    monkeypatch.setitem(JOB_KINDS, "boom", jobrows.JobKind("boom", boom))
    bad = enqueue(engine, "boom", {"x": "input-7"})
    ok = enqueue(engine, "import_builtin", {"name": "jbb_harmful"})
    assert Worker(engine).run(once=True) == 2
    b = get_job(engine, bad.id)
    assert b.status == "failed" and "RuntimeError: handler broke on input-7" in b.error
    assert b.progress_done == 1 and b.progress_total == 2 and "Traceback" in b.log_tail
    assert get_job(engine, ok.id).status == "succeeded"


def test_a_running_job_cancelled_mid_way_ends_cancelled(engine, monkeypatch):
    seen = {}

    def slow(ctx, **_params):
        request_cancel(ctx.engine, ctx.job_id)  # as if a user pressed cancel while it ran
        for i in range(100):
            ctx.progress(i, 100, force=True)
            seen["last"] = i
        return {}

    Worker(engine)
    monkeypatch.setitem(JOB_KINDS, "slow", jobrows.JobKind("slow", slow))
    job = enqueue(engine, "slow")
    Worker(engine).run(once=True)
    j = get_job(engine, job.id)
    assert j.status == "cancelled" and "last" not in seen  # the first progress call saw the flag


# -- who may cancel, and how pages and commands reach the queue --------------------------------------------------
def _person(engine, name: str, role: str) -> int:
    from db.models import User

    with Session(engine) as s:
        u = User(username=name, password_hash="not-a-real-hash", role=role)
        s.add(u)
        s.commit()
        return u.id


def test_cancelling_a_job_is_checked_on_the_acting_user(engine):
    from core.errors import PermissionDenied
    from curation.job_cancel import cancel_job

    annotator, owner, colleague, admin = (_person(engine, n, r) for n, r in (
        ("ann", "annotator"), ("owner", "reviewer"), ("colleague", "reviewer"), ("boss", "admin")))
    mine = enqueue(engine, "noop", created_by=owner)
    for someone_else in (annotator, colleague):
        with pytest.raises(PermissionDenied):
            cancel_job(engine, someone_else, mine.id)
    assert not get_job(engine, mine.id).cancel_requested and get_job(engine, mine.id).status == "queued"
    assert cancel_job(engine, owner, mine.id).status == "cancelled"  # the user who queued it
    theirs = enqueue(engine, "noop", created_by=colleague)
    assert cancel_job(engine, admin, theirs.id).status == "cancelled"  # admins cancel any job
    operator = enqueue(engine, "noop")
    assert cancel_job(engine, None, operator.id).status == "cancelled"  # the CLI / worker


def test_pages_and_commands_reach_the_queue_only_through_checked_services():
    """db.jobs.enqueue and request_cancel check no one: nothing under app/ calls them directly."""
    import ast
    from pathlib import Path

    unchecked = {"enqueue", "request_cancel"}
    found = []
    for path in (Path(__file__).resolve().parents[1] / "app").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "db.jobs":
                found += [f"{path.name}: {a.name}" for a in node.names if a.name in unchecked]
            elif isinstance(node, ast.ImportFrom) and node.module == "db":
                aliases |= {a.asname or a.name for a in node.names if a.name == "jobs"}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names if a.name == "db.jobs"}
        found += [f"{path.name}: {n.value.id}.{n.attr}" for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                  and n.attr in unchecked and isinstance(n.value, ast.Name) and n.value.id in aliases]
    assert found == []


def test_the_jobs_page_cancels_through_the_checked_service(app_db):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    admin = _person(app_db, "boss", "admin")
    job = enqueue(app_db, "noop", created_by=_person(app_db, "owner", "reviewer"))
    at = AppTest.from_file(
        str(Path(__file__).resolve().parents[1] / "app" / "web" / "views" / "jobs.py"), default_timeout=60)
    at.session_state["user_id"] = admin
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key=f"cancel_{job.id}").click().run()
    assert not at.exception and get_job(app_db, job.id).status == "cancelled"


def test_the_jobs_page_shows_the_worker_its_heartbeat_and_the_duration(app_db):
    from datetime import timedelta
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    admin = _person(app_db, "boss", "admin")
    enqueue(app_db, "noop", requires_label="gpu")
    running = enqueue(app_db, "noop")
    assert claim_next(app_db, "host-7:123:abc", kinds=["noop"]).id == running.id
    with app_db.begin() as c:  # started 75 s ago, last beat 12 s ago
        c.execute(update(Job).where(Job.id == running.id).values(
            started_at=utcnow() - timedelta(seconds=75), heartbeat_at=utcnow() - timedelta(seconds=12)))
    at = AppTest.from_file(
        str(Path(__file__).resolve().parents[1] / "app" / "web" / "views" / "jobs.py"), default_timeout=60)
    at.session_state["user_id"] = admin
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[running.id, "worker"] == "host-7:123:abc"
    assert table.loc[running.id, "heartbeat"] in ("0:12 ago", "0:13 ago")
    assert table.loc[running.id, "duration"] in ("1:15", "1:16")
    assert table.loc[running.id - 1, "needs label"] == "gpu" and table.loc[running.id - 1, "worker"] == ""


def test_cli_wait_follows_a_labelled_job_instead_of_running_it_here(sqlite_engine):
    """`--wait` on a job meant for a GPU worker must not run it on the machine that queued it."""
    from app.cli.common import wait_for_job

    job = enqueue(sqlite_engine, "import_builtin", {"name": "xstest"}, requires_label="gpu")
    box = {}
    t = threading.Thread(target=lambda: box.update(job=wait_for_job(sqlite_engine, job.id, "xstest")), daemon=True)
    t.start()
    time.sleep(2.5)
    assert get_job(sqlite_engine, job.id).status == "queued" and t.is_alive()
    assert Worker(sqlite_engine).run_one() is False  # a worker without the label leaves it too
    assert Worker(sqlite_engine, labels=["gpu"]).run_one()
    t.join(timeout=30)
    assert box["job"].status == "succeeded" and box["job"].worker_id.endswith("[gpu]")
