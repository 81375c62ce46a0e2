"""The background worker: claims queued jobs (optionally only some kinds) and runs each with db.jobs' runner.
Before each claim it reaps: jobs whose worker stopped heart-beating, then what those jobs left half done."""
from __future__ import annotations

import os
import socket
import time
import uuid

from sqlalchemy.engine import Engine

from db import jobs as jobrows


def load_job_kinds() -> None:
    """Import every module that registers job kinds, so the runner knows them all."""
    import curation.export.jobs  # noqa: F401
    import curation.generation.jobs  # noqa: F401
    import curation.judges.jobs  # noqa: F401
    import curation.prompts.jobs  # noqa: F401
    import curation.review.argilla.jobs  # noqa: F401
    import evaluation.jobs  # noqa: F401
    import training.jobs  # noqa: F401
    import workflows.jobs  # noqa: F401


class Worker:
    def __init__(self, engine: Engine, *, heartbeat_s: float = 5.0, stale_after_s: float = 60.0,
                 poll_s: float = 1.0, worker_id: str | None = None):
        self.engine = engine
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        load_job_kinds()

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
        job = jobrows.claim_next(self.engine, self.worker_id, kinds=list(jobrows.JOB_KINDS))
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
