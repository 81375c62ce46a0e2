"""`rational db upgrade`, `rational users add`, `rational jobs list`, `rational worker`, `rational serve` and
`rational doctor`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from app.cli.common import DataTable, engine, fail, out

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs.")


def register(app: typer.Typer, users_app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(jobs_app, name="jobs")
    users_app.command("add")(users_add)
    users_app.command("password")(users_password)
    app.command("worker")(worker)
    app.command("serve")(serve)
    app.command("doctor")(doctor)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (DATABASE_URL, or the SQLite file under RATIONAL_HOME) to the latest schema."""
    from db.engine import get_engine
    from db.migrate import current_revision, upgrade

    eng = get_engine()
    upgrade(eng)
    out.print(f"database at revision {current_revision(eng)} ({eng.url.render_as_string(hide_password=True)})")


@db_app.command("backup")
def db_backup(path: Path = typer.Argument(..., help="a new folder for the backup")) -> None:
    """Copy the database and the artifact root's data (uploads, exports, training runs, loop reports) into a new
    folder, consistently, while the app and workers keep running. PostgreSQL needs pg_dump on PATH."""
    from db.backup import BackupError, backup
    from db.engine import artifact_root, get_engine

    try:
        m = backup(get_engine(), path, artifact_root())
    except BackupError as e:
        fail(str(e))
    out.print(f"backup {path}: {m['database']} at revision {', '.join(m['revision'])}, "
              f"{sum(m['counts'].values())} rows in {len(m['counts'])} tables, {m['files']} files",
              markup=False, highlight=False)


@db_app.command("restore")
def db_restore(path: Path = typer.Argument(..., help="a folder made by `rational db backup`")) -> None:
    """Restore a backup into an empty database (DATABASE_URL, or a new RATIONAL_HOME) and its artifact root, then
    upgrade the schema. Stop the app and workers of the target first. PostgreSQL needs pg_restore on PATH."""
    from db.backup import BackupError, restore
    from db.engine import artifact_root, get_engine

    try:
        m = restore(get_engine(), path, artifact_root())
    except BackupError as e:
        fail(str(e))
    out.print(f"restored {path}: {sum(m['counts'].values())} rows, {m['files']} files; sign in with the accounts "
              "it holds", markup=False, highlight=False)


def users_add(name: str, role: str = typer.Option(..., "--role", help="admin | reviewer | annotator"),
              password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin")
              ) -> None:
    """Add a local account. The password is read from stdin when it is not a terminal, else prompted."""
    from curation.auth import create_user

    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(engine(), name, password, role)
    except ValueError as e:
        fail(str(e))
    out.print(f"user '{user.username}' added as {user.role}")


def users_password(name: str,
                   password_stdin: bool = typer.Option(False, "--password-stdin", help="read it from stdin")) -> None:
    """Set a local account's password, as the local operator; every session of that user ends."""
    from curation.auth import change_password, find_user

    user = find_user(engine(), name)
    if user is None:
        fail(f"no user '{name}'")
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        change_password(engine(), None, user.id, password)
    except ValueError as e:
        fail(str(e))
    out.print(f"password of '{name}' changed; their sessions ended")


@jobs_app.command("list")
def jobs_list(limit: int = typer.Option(20, "--limit")) -> None:
    from db.crud import list_jobs

    t = DataTable("id", "kind", "status", "progress", "worker", "label", "message", "error")
    for j in list_jobs(engine(), limit=limit):
        prog = f"{j.progress_done}/{j.progress_total}" if j.progress_total else str(j.progress_done)
        t.add_row(str(j.id), j.kind, j.status, prog, j.worker_id or "", j.requires_label or "", j.message,
                  (j.error or "")[:80])
    out.print(t)


def worker(once: bool = typer.Option(False, "--once", help="run queued jobs, then exit"),
           kinds: str = typer.Option("", "--kinds", help="comma-separated job kinds to run (default: all), "
                                     "e.g. train,eval"),
           label: list[str] = typer.Option([], "--label", help="a label this worker carries (repeatable), e.g. "
                                           "gpu: jobs that require it run only on such workers"),
           heartbeat: float = typer.Option(5.0, "--heartbeat", help="seconds between a running job's heartbeats"),
           stale_after: float = typer.Option(60.0, "--stale-after", help="seconds without heartbeat before a "
                                             "job counts as abandoned")) -> None:
    """Run the background job worker. Start several (here or on other machines sharing the database): each job
    runs once, on a worker that runs its kind and carries the label it requires."""
    from app.worker import Worker
    from core.errors import UserError

    if stale_after <= 2 * heartbeat:
        fail(f"--stale-after ({stale_after:g} s) must exceed twice --heartbeat ({heartbeat:g} s), or live jobs "
             "would be reaped")
    labels = [x for item in label for x in item.split(",")]
    try:
        w = Worker(engine(), heartbeat_s=heartbeat, stale_after_s=stale_after,
                   kinds=kinds.split(",") if kinds else None, labels=labels)
    except UserError as e:
        fail(str(e))
    out.print(f"worker {w.worker_id}: kinds {', '.join(w.kinds)}", markup=False, highlight=False)
    n = w.run(once=once)
    out.print(f"ran {n} job(s)")


def serve(port: int = typer.Option(8501, "--port"), address: str = typer.Option("localhost", "--address")) -> None:
    """Start the Streamlit app. It takes this process's place, so a supervisor's SIGTERM reaches Streamlit
    itself (a child would keep running and holding the port)."""
    engine()
    script = Path(__file__).resolve().parent.parent / "web" / "streamlit_app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def doctor(model: str = typer.Option("default", "--model", help="model name or folder the engines are measured on"),
           tokens: int = typer.Option(100_000, "--tokens", help="job size (generated tokens) the choice is made for"),
           probe: bool = typer.Option(False, "--probe", help="measure engines not measured yet on this CPU and model "
                                      "(vLLM's start takes minutes)")) -> None:
    """This machine's CPU, each local engine's measured speed here, and which one `--backend auto` picks."""
    from curation.backends.catalog import resolve_model
    from curation.backends.choice import VLLM_MIN_START_S, cached, choose, cpu, installed, isa_line

    info = cpu()
    out.print(f"CPU: {isa_line(info)}", markup=False, highlight=False)
    engines = installed()
    out.print(f"local engines: {', '.join(engines)}", markup=False, highlight=False)
    path = resolve_model(model)
    table = DataTable("engine", "tokens/s", "start s", "measured", "note")
    hits = {name: cached(info, name, path) for name in engines}
    for name, hit in hits.items():
        table.add_row(name, f"{hit.tokens_per_s:.0f}" if hit else "—", f"{hit.start_s:.0f}" if hit else "—",
                      hit.measured_at if hit else "not yet", (hit.error or "") if hit else "")
    out.print(table)
    if probe:
        choice = choose(path, tokens, log=lambda line: out.print(line, markup=False, highlight=False))
        out.print(f"auto picks {choice.reason}", markup=False, highlight=False, soft_wrap=True)
    elif all(hits.values()):
        choice = choose(path, tokens)
        out.print(f"auto picks {choice.reason}", markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(f"auto measures the engines not measured yet on the first job (vLLM only for jobs over "
                  f"{VLLM_MIN_START_S:.0f} s); `rational doctor --probe` measures them now", markup=False,
                  highlight=False)
