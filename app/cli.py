"""`rational` command line. Exit 0 on success; 2 with a one-line reason on bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Rational Studio: safety reasoning traces, "
                  "review, export, training and evaluation.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
users_app = typer.Typer(no_args_is_help=True, help="Local accounts.")
sets_app = typer.Typer(no_args_is_help=True, help="Built-in prompt sets.")
prompts_app = typer.Typer(no_args_is_help=True, help="Prompts.")
jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs.")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(sets_app, name="sets")
app.add_typer(prompts_app, name="prompts")
app.add_typer(jobs_app, name="jobs")
app.add_typer(__import__("app.cli_argilla").cli_argilla.argilla_app, name="argilla")  # push/pull/status
from app import cli_eval  # noqa: E402  (eval commands; the module imports nothing from here at load)
app.command("eval")(cli_eval.eval_command)
app.command("eval-runs")(cli_eval.eval_runs_command)
app.command("compare")(cli_eval.compare_command)
__import__("app.cli_review").cli_review.install(app, users_app)  # users list|set-role, queues …
__import__("app.cli_generation").cli_generation.install(app)  # generate, mutate, label, templates
app.command("export")(__import__("app.cli_training").cli_training.export_cmd)  # export snapshots
app.command("train")(__import__("app.cli_training").cli_training.train_cmd)  # LoRA SFT/DPO runs
app.command("loop")(__import__("app.cli_loop").cli_loop.loop_command)  # the RATIONAL loop end to end
out = Console()
err = Console(stderr=True)


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
                    console=err, transient=False, disable=not err.is_terminal)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (DATABASE_URL, or the SQLite file under RATIONAL_HOME) to the latest schema."""
    from db.engine import get_engine
    from db.migrate import current_revision, upgrade

    eng = get_engine()
    upgrade(eng)
    out.print(f"database at revision {current_revision(eng)} ({eng.url.render_as_string(hide_password=True)})")


@users_app.command("add")
def users_add(name: str, role: str = typer.Option(..., "--role", help="admin | reviewer | annotator"),
              password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin")
              ) -> None:
    """Add a local account. The password is read from stdin when it is not a terminal, else prompted."""
    from db.crud import create_user

    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(engine(), name, password, role)
    except ValueError as e:
        fail(str(e))
    out.print(f"user '{user.username}' added as {user.role}")


@sets_app.command("list")
def sets_list() -> None:
    """Built-in sets, their license, default split, and whether they are installed."""
    from curation.builtin import BUILTIN_SETS
    from db.crud import list_sets

    installed = {s["name"]: s["prompts"] for s in list_sets(engine())}
    # The name is what `sets import` takes: never cut it, whatever the width of the output.
    t = Table(Column("name", no_wrap=True, min_width=max(len(n) for n in BUILTIN_SETS)), "split", "behaviour",
              "license", "installed", "use")
    for s in BUILTIN_SETS.values():
        beh = s.behavior or ",".join(f"{k}→{v}" for k, v in s.behavior_map.items())
        t.add_row(s.name, s.split, beh, s.license, str(installed.get(s.name, "-")), s.use)
    out.print(t)


@sets_app.command("import")
def sets_import(names: List[str] = typer.Argument(..., help="built-in set names, or 'all'")) -> None:
    """Install built-in sets (re-running adds nothing)."""
    from curation.builtin import BUILTIN_SETS, import_builtin

    if names == ["all"]:
        names = list(BUILTIN_SETS)
    unknown = [n for n in names if n not in BUILTIN_SETS]
    if unknown:
        fail(f"unknown built-in set(s) {unknown}; see 'rational sets list'")
    eng = engine()
    for name in names:
        report = _with_progress(name, lambda p: import_builtin(eng, name, progress=p))
        out.print(f"{name}: {report.summary()}")


def _with_progress(label: str, fn):
    with progress_bar() as bar:
        task = bar.add_task(label, total=None)

        def cb(done, total, phase):
            bar.update(task, completed=done, total=total, description=f"{label} ({phase})")

        return fn(cb)


def _parse_pairs(items: list[str], what: str) -> dict[str, str]:
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


@app.command("import")
def import_file(
    path: Path = typer.Argument(..., help="CSV, TSV, JSONL, JSON, Parquet, or a datasets save_to_disk folder"),
    set_name: str = typer.Option(..., "--set", help="prompt set to import into (created if new)"),
    map_: List[str] = typer.Option([], "--map", help="field=column; fields: text, source_id, category, "
                                   "mutation, split. Default text=prompt"),
    behavior: Optional[str] = typer.Option(None, "--behavior", help="refuse | comply | partial for every row"),
    behavior_column: Optional[str] = typer.Option(None, "--behavior-column"),
    behavior_map: List[str] = typer.Option([], "--behavior-map", help="e.g. safe=comply,unsafe=refuse"),
    split: str = typer.Option("train", "--split", help="train | eval"),
    all_or_nothing: bool = typer.Option(False, "--all-or-nothing", help="import nothing if any row is invalid"),
    file_format: Optional[str] = typer.Option(None, "--format", help="csv|tsv|jsonl|json|parquet|hf_disk|hf_file"),
    delimiter: Optional[str] = typer.Option(None, "--delimiter"),
    hf_split: Optional[str] = typer.Option(None, "--hf-split", help="split of a DatasetDict folder"),
    max_chars: int = typer.Option(32_000, "--max-chars"),
    queue: bool = typer.Option(False, "--queue", help="enqueue a job for the worker instead of running here"),
) -> None:
    """Import prompts from a file, mapping columns to fields."""
    from curation.importer import ImportConfig, PromptImporter
    from curation.readers import ImportFileError

    mapping = _parse_pairs(map_, "--map") or {}
    mapping.setdefault("text", "prompt")
    try:
        cfg = ImportConfig(set_name=set_name, mapping=mapping, behavior=behavior, behavior_column=behavior_column,
                           behavior_map=_parse_pairs(behavior_map, "--behavior-map"), split=split,
                           all_or_nothing=all_or_nothing, file_format=file_format, delimiter=delimiter,
                           hf_split=hf_split, max_chars=max_chars)
        cfg.validate()
    except ValueError as e:
        fail(str(e))
    if not path.exists():
        fail(f"{path}: file not found")
    eng = engine()
    if queue:
        from db.jobs import enqueue

        job = enqueue(eng, "import", {"path": str(path.resolve()), "config": cfg.to_dict()})
        out.print(f"queued job {job.id}")
        return
    try:
        report = _with_progress(path.name, lambda p: PromptImporter(eng, cfg).run(path, progress=p))
    except ImportFileError as e:
        fail(str(e))
    for e in report.errors[:20]:
        loc = f"line {e['line']}" if e["line"] is not None else f"row {e['row']}"
        err.print(f"  {e['file']}:{loc}: field '{e['field']}': {e['message']}", markup=False, highlight=False,
                  soft_wrap=True)
    if report.invalid > 20:
        err.print(f"  … and {report.invalid - 20} more invalid rows")
    for w in report.warnings[:20]:
        loc = f"line {w['line']}" if w["line"] is not None else f"row {w['row']}"
        err.print(f"  warning: {w['file']}:{loc}: field '{w['field']}': {w['message']}", markup=False,
                  highlight=False, soft_wrap=True)
    if report.status != "succeeded":
        fail(report.summary())
    out.print(report.summary(), markup=False, highlight=False)


@prompts_app.command("list")
def prompts_list(set_name: Optional[str] = typer.Option(None, "--set"), limit: int = typer.Option(20, "--limit"),
                 behavior: Optional[str] = typer.Option(None, "--behavior"),
                 split: Optional[str] = typer.Option(None, "--split"),
                 search: Optional[str] = typer.Option(None, "--search")) -> None:
    """List prompts (server-side filters)."""
    from db.crud import PromptFilter, count_prompts, list_prompts

    flt = PromptFilter(set_names=[set_name] if set_name else None, behaviors=[behavior] if behavior else None,
                       splits=[split] if split else None, search=search)
    eng = engine()
    t = Table("id", "set", "behaviour", "split", "category", "text")
    for r in list_prompts(eng, flt, limit=limit):
        t.add_row(str(r["id"]), r["set"], r["expected_behavior"], r["split"], r["category"] or "",
                  (r["text"][:100] + "…") if len(r["text"]) > 100 else r["text"])
    out.print(t)
    out.print(f"{count_prompts(eng, flt)} prompts match")


@jobs_app.command("list")
def jobs_list(limit: int = typer.Option(20, "--limit")) -> None:
    from db.crud import list_jobs

    t = Table("id", "kind", "status", "progress", "message", "error")
    for j in list_jobs(engine(), limit=limit):
        prog = f"{j.progress_done}/{j.progress_total}" if j.progress_total else str(j.progress_done)
        t.add_row(str(j.id), j.kind, j.status, prog, j.message, (j.error or "")[:80])
    out.print(t)


@app.command("worker")
def worker(once: bool = typer.Option(False, "--once", help="run queued jobs, then exit"),
           stale_after: float = typer.Option(60.0, "--stale-after", help="seconds without heartbeat before a "
                                             "job counts as abandoned")) -> None:
    """Run the background job worker."""
    from app.worker import Worker

    w = Worker(engine(), stale_after_s=stale_after)
    n = w.run(once=once)
    out.print(f"ran {n} job(s)")


@app.command("serve")
def serve(port: int = typer.Option(8501, "--port"), address: str = typer.Option("localhost", "--address")) -> None:
    """Start the Streamlit app."""
    engine()
    script = Path(__file__).with_name("streamlit_app.py")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    raise typer.Exit(subprocess.call(cmd, env=os.environ.copy()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
