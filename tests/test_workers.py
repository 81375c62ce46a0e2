"""Several workers on one PostgreSQL database, as on several machines: three real `rational worker` processes with
different kinds and labels run a mix of jobs. Each job runs exactly once, on a worker allowed to run it; a worker
killed (SIGKILL) while it generates has its job reaped by another worker and re-queued, and the run finishes with
every sample stored once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from curation.generation.config import GenerationConfig, Selection
from curation.generation.jobs import enqueue_generation
from curation.generation.runs import create_run
from curation.prompts.importer import ImportConfig
from curation.prompts.jobs import enqueue_import
from db.engine import make_engine
from db.jobs import get_job
from db.models import Job, PromptSet, Trace
from tests.test_generation import add_prompts
from tests.test_training import _wait

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
WORKERS = {"imports": ["--kinds", "import,import_builtin"],
           "gen": ["--kinds", "generate,label,import"],
           "gpu": ["--label", "gpu"]}


def _start(name: str, url: str, logs: Path) -> subprocess.Popen:
    log = open(logs / f"{name}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker", *WORKERS[name], "--heartbeat", "0.5",
                             "--stale-after", "4"], cwd=ROOT, env={**os.environ, "DATABASE_URL": url},
                            stdout=log, stderr=subprocess.STDOUT)


def _pid(job: Job) -> int:
    return int(job.worker_id.split(":")[1])


def test_three_workers_route_by_kind_and_label_run_each_job_once_and_recover_a_killed_one(pg_url, tmp_path,
                                                                                          tiny_model_dir):
    eng = make_engine(pg_url)
    uploads = tmp_path / "files"
    uploads.mkdir()
    plain, gpu_only = [], []
    for i in range(10):
        f = uploads / f"set{i}.csv"
        f.write_text("prompt,behavior\n" + "".join(f"prompt {i}-{k},refuse\n" for k in range(5)))
        job = enqueue_import(eng, None, str(f), ImportConfig(set_name=f"set{i}", behavior="refuse"))
        (plain if i < 8 else gpu_only).append(job.id)
    with Session(eng) as s:  # two of them require the gpu label
        for j in gpu_only:
            s.get(Job, j).requires_label = "gpu"
        s.commit()
    add_prompts(eng, "gen-set", [(f"Tell me about topic number {k}.", "comply") for k in range(60)])
    run = create_run(eng, GenerationConfig(model=str(tiny_model_dir), backend="transformers", samples=2,
                                           max_tokens=24, temperature=1.0, batch_prompts=2),
                     Selection(set_names=["gen-set"]))

    procs = {name: _start(name, pg_url, tmp_path) for name in WORKERS}
    pids = {p.pid: name for name, p in procs.items()}
    try:
        _wait(lambda: all(get_job(eng, j).status == "succeeded" for j in plain + gpu_only), 180, "the imports")
        gen_job = enqueue_generation(eng, None, run.id).id
        _wait(lambda: (get_job(eng, gen_job).progress_done or 0) >= 4, 180, "generation to make progress")
        first = get_job(eng, gen_job)
        victim = pids[_pid(first)]
        assert victim in ("gen", "gpu")  # the imports-only worker never takes a generate job
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(timeout=30)
        done = _wait(lambda: (j := get_job(eng, gen_job)).status == "succeeded" and j, 300, "the re-queued run")
    finally:
        for p in procs.values():
            p.kill()
            p.wait(timeout=30)
        logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace")[-1500:] for n in WORKERS}

    assert done.attempts == 2 and pids[_pid(done)] != victim, logs
    with Session(eng) as s:
        jobs = {j.id: j for j in s.execute(select(Job)).scalars()}
        n_traces = s.execute(select(func.count(Trace.id)).where(Trace.run_id == run.id)).scalar()
        pairs = s.execute(select(func.count()).select_from(
            select(Trace.prompt_id, Trace.sample_index).where(Trace.run_id == run.id).distinct().subquery())).scalar()
        sets = s.execute(select(func.count(PromptSet.id)).where(PromptSet.name.like("set%"))).scalar()
    assert n_traces == pairs == 120  # every sample once: none lost to the kill, none stored twice
    assert sets == 10
    for j in plain + gpu_only:
        assert jobs[j].attempts == 1 and jobs[j].status == "succeeded"  # each ran exactly once
    assert {pids[_pid(jobs[j])] for j in gpu_only} == {"gpu"}  # a required label is honoured
    assert {pids[_pid(jobs[j])] for j in plain} <= set(WORKERS)
    assert len({pids[_pid(jobs[j])] for j in plain}) >= 2, "the imports should spread over more than one worker"
    eng.dispose()
