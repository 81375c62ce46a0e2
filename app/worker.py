"""The background worker: claims queued jobs it may run (its kinds; jobs that require a label only when it carries
that label) and runs each with db.jobs' runner. Several workers, on one machine or many, share one database: the
claim is atomic, so each job runs once. Before each claim a worker reaps: jobs whose worker stopped heart-beating
(re-queued when resumable), then what those jobs left half done."""
from __future__ import annotations

import os
import socket
import time
import uuid

from sqlalchemy.engine import Engine

from core.errors import UserError
from db import jobs as jobrows

load_job_kinds = jobrows.load_job_kinds  # every kind in db.jobs.HANDLER_MODULES, registered


_ALIASES = {"eval": "evaluate"}


def job_kinds(names: list[str] | None) -> list[str]:
    """The kinds a worker runs: all registered ones by default; an unknown name is a one-line error."""
    load_job_kinds()
    if not names:
        return sorted(jobrows.JOB_KINDS)
    kinds = [_ALIASES.get(n.strip(), n.strip()) for n in names if n.strip()]
    unknown = [k for k in kinds if k not in jobrows.JOB_KINDS]
    if unknown:
        raise UserError(f"unknown job kind(s) {', '.join(unknown)}; known: {', '.join(sorted(jobrows.JOB_KINDS))}")
    return sorted(set(kinds))


class Worker:
    def __init__(self, engine: Engine, *, heartbeat_s: float = 5.0, stale_after_s: float = 60.0,
                 poll_s: float = 1.0, worker_id: str | None = None, kinds: list[str] | None = None,
                 labels: list[str] | None = None):
        self.engine = engine
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.kinds = job_kinds(kinds)
        self.labels = sorted({lab for lab in (jobrows.worker_label(x) for x in labels or []) if lab})
        tag = f"[{','.join(self.labels)}]" if self.labels else ""
        self.worker_id = (worker_id or f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:6]}{tag}")[:200]

    def reap(self) -> None:
        from curation.export.snapshot import reap_exports
        from curation.prompts.importer import reap_imports
        from training.runs import reconcile

        jobrows.reap_stale(self.engine, self.stale_after_s)
        reconcile(self.engine)  # training runs whose job has ended: failed, their PID cleared
        reap_exports(self.engine)  # snapshots still building under an ended job: failed, temp folders removed
        reap_imports(self.engine)  # imports still staging under an ended job: their hidden rows deleted

    def run_one(self) -> bool:
        """Claim and run one job; False when nothing was queued."""
        self.reap()
        job = jobrows.claim_next(self.engine, self.worker_id, kinds=self.kinds, labels=self.labels)
        if job is None:
            return False
        jobrows.execute(self.engine, job, heartbeat_s=self.heartbeat_s)
        return True

    def run(self, once: bool = False) -> int:
        """Work until stopped; with once=True, drain the queue and return the number of jobs run."""
        n = 0
        while True:
            if self.run_one():
                n += 1
                continue
            if once:
                return n
            time.sleep(self.poll_s)
