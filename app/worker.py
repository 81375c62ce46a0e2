"""The background worker: claims queued jobs and runs their handlers, beating a heartbeat meanwhile."""
from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import uuid

from sqlalchemy.engine import Engine

from db import jobs as jobrows
from db.jobs import JOB_KINDS, JobCancelled, JobContext


def load_job_kinds() -> None:
    """Import every module that registers job kinds (later issues add theirs here)."""
    import curation.jobs  # noqa: F401
    import curation.jobs_argilla  # noqa: F401
    import curation.jobs_generation  # noqa: F401
    import training.jobs_eval  # noqa: F401
    import training.loop  # noqa: F401  (the "loop" quick start)

    try:
        import training.jobs  # noqa: F401
    except ImportError:
        pass


class Worker:
    def __init__(self, engine: Engine, *, heartbeat_s: float = 5.0, stale_after_s: float = 60.0,
                 poll_s: float = 1.0, worker_id: str | None = None):
        self.engine = engine
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        load_job_kinds()

    def run_one(self) -> bool:
        """Claim and run one job; False when nothing was queued."""
        jobrows.reap_stale(self.engine, self.stale_after_s)
        job = jobrows.claim_next(self.engine, self.worker_id, kinds=list(JOB_KINDS))
        if job is None:
            return False
        ctx = JobContext(self.engine, job)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job.id, stop), daemon=True)
        beat.start()
        try:
            kind = JOB_KINDS[job.kind]
            result = kind.handler(ctx, **ctx.params)
            jobrows.finish(self.engine, job.id, status="succeeded", result=result)
        except JobCancelled:
            jobrows.finish(self.engine, job.id, status="cancelled", error="cancelled by request")
        except Exception as e:  # a handler's failure is the job's failure, never the worker's
            ctx.log(traceback.format_exc()[-4000:])
            jobrows.finish(self.engine, job.id, status="failed", result=getattr(e, "result", None),
                           error=f"{type(e).__name__}: {e}"[:4000])
        finally:
            stop.set()
            beat.join(timeout=self.heartbeat_s + 1)
        return True

    def _beat(self, job_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                jobrows.heartbeat(self.engine, job_id)
            except Exception:
                pass  # a missed beat is tolerated; the reaper only acts after stale_after_s

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
