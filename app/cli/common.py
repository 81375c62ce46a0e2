"""What every command shares: the consoles, the one-line failure, the migrated engine, progress bars, the acting
user, and `--wait` (run exactly the queued job here, drawing its progress from the job row)."""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)



class DataTable(Table):
    """A Rich table whose cells are data: text shows as it is, never read as Rich markup (a name `[q]` stays)."""

    def add_row(self, *cells, **kw) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **kw)

def fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def engine():
    from db.engine import get_engine
    from db.migrate import ensure_schema

    eng = get_engine()
    ensure_schema(eng)
    return eng


def progress_bar():
    # Only on a terminal: in scripts and logs a bar's last frame would come before the one-line error.
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal)


@contextmanager
def live_progress(label: str, every_s: float = 15.0):
    """A callback (done, total, message) that shows long work as it goes: a bar on a terminal; in a log or a pipe,
    a line on stdout (stderr keeps only the one-line error) when the message's wording changes (a new stage) and
    at most every `every_s` seconds otherwise."""
    if err.is_terminal:
        with progress_bar() as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total, msg: bar.update(task, completed=done, total=total or None,
                                                      description=f"{label}: {msg}")
        return
    state = {"at": 0.0, "stage": None}

    def show(done, total, msg) -> None:
        stage = re.sub(r"\d[\d.,:]*", "#", str(msg))  # the same words with other numbers: the same stage
        now = time.monotonic()
        if stage != state["stage"] or now - state["at"] >= every_s:
            state.update(at=now, stage=stage)
            out.print(f"{label}: {msg}", markup=False, highlight=False, soft_wrap=True)

    yield show


def with_progress(label: str, fn):
    with progress_bar() as bar:
        task = bar.add_task(label, total=None)

        def cb(done, total, phase):
            bar.update(task, completed=done, total=total, description=f"{label} ({phase})")

        return fn(cb)


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                fail(f"{what} '{part}' must look like key=value")
            k, v = part.split("=", 1)
            pairs[k.strip()] = v.strip()
    return pairs


def split_list(values: list[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def actor_id(eng, username: Optional[str], *, default_admin: bool = False) -> Optional[int]:
    """The user a command acts as (`--as NAME`); with default_admin the first active admin; else None, the local
    operator."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from core.vocabulary import Role
    from db.models import User

    if not username and not default_admin:
        return None
    with Session(eng) as s:
        q = select(User).where(User.is_active.is_(True))
        q = q.where(User.username == username) if username else q.where(User.role == Role.ADMIN).order_by(User.id)
        u = s.execute(q).scalars().first()
    if u is None:
        fail(f"no active user '{username}'" if username else
             "no admin account: add one with 'rational users add NAME --role admin'")
    return u.id


def wait_for_job(eng, job_id: int, label: str, on_poll: Callable | None = None):
    """Run exactly this job here (the worker's runner); if a worker claimed it first, or it requires a worker
    label (it is meant for such a worker, e.g. a GPU machine), follow it there. Draws progress from the job row,
    as the web app does, and returns the finished job."""
    from db.jobs import JobNotQueued, get_job, run_job_here

    box: dict = {}
    needs = get_job(eng, job_id).requires_label
    if needs:
        err.print(f"waiting for a worker started with --label {needs} to run job {job_id}", markup=False)

    def work() -> None:
        if needs:
            return
        try:
            box["job"] = run_job_here(eng, job_id)
        except JobNotQueued:
            box["elsewhere"] = True

    t = threading.Thread(target=work, daemon=True)
    t.start()
    # A bar on a terminal only: outside one, a failed --wait prints its one-line error and nothing else.
    with progress_bar() as bar:
        task = bar.add_task(label, total=None)
        while True:
            t.join(timeout=1.0)
            j = get_job(eng, job_id)
            if on_poll is not None:
                on_poll(j)
            bar.update(task, completed=j.progress_done, total=j.progress_total, description=f"{label}: {j.message}")
            if not t.is_alive() and j.status not in ("queued", "running"):
                break
    return box.get("job") or get_job(eng, job_id)


def finished_or_fail(job) -> None:
    if job.status != "succeeded":
        fail(f"job {job.id} {job.status}: {job.error}")
