"""`rational argilla …`: status, push, pull, datasets. Runs the sync in this process with a progress bar, or
queues it for the worker with --enqueue. Connection settings come from ARGILLA_API_URL / ARGILLA_API_KEY
(ARGILLA_WORKSPACE) or the Argilla page; the key is never printed."""
from __future__ import annotations

import json
from typing import List, Optional

import typer

from app.cli.common import actor_id, engine, fail, out, with_progress

argilla_app = typer.Typer(no_args_is_help=True, help="Argilla bulk annotation: push traces, pull responses.")


def register(app: typer.Typer) -> None:
    app.add_typer(argilla_app, name="argilla")


def _run(label: str, enqueue_fn, run_fn, as_user: Optional[str], enqueue: bool, **params) -> None:
    """Queue the sync for the worker, or run it here with a progress bar; either way as an admin."""
    from core.errors import PermissionDenied
    from curation.review.argilla.connection import ArgillaError

    eng = engine()
    uid = actor_id(eng, as_user, default_admin=True)
    try:
        if enqueue:
            job = enqueue_fn(eng, uid, **params)
            out.print(f"queued job {job.id} ({label}); run 'rational worker' to execute it")
            return
        res = with_progress(label, lambda p: run_fn(eng, uid, progress=p, **params))
    except (ValueError, PermissionDenied, ArgillaError) as e:
        fail(str(e))
    out.print(json.dumps(res, indent=1, default=str), highlight=False)


@argilla_app.command("status")
def status_cmd() -> None:
    """Check the connection (URL and workspace from the environment or the saved settings)."""
    from curation.review.argilla.connection import status

    st = status()
    if not st["ok"]:
        fail(f"Argilla not reachable: {st.get('error')}" + (f" ({st['url']})" if st.get("url") else ""))
    out.print(f"connected to {st['url']} as {st['username']} ({st['role']}), workspace '{st['workspace']}'")


@argilla_app.command("push")
def push_cmd(queue: Optional[str] = typer.Option(None, "--queue", help="push this queue's open traces"),
             filters: List[str] = typer.Option([], "--filter", help="trace filter: field=value (repeatable) or "
                                               "a JSON object; fields as in review queues"),
             dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset name (default: the queue's)"),
             overlap: Optional[int] = typer.Option(None, "--overlap", help="responses per record "
                                                   "(default: the queue's overlap, 1 for a filter)"),
             as_user: Optional[str] = typer.Option(None, "--as", help="acting admin (default: the first admin)"),
             enqueue: bool = typer.Option(False, "--enqueue", help="queue a job for the worker instead")) -> None:
    """Push traces with suggestions to an Argilla dataset (re-pushing updates, never duplicates)."""
    from curation.review.argilla.jobs import enqueue_push
    from curation.review.argilla.push import push
    from db.filters import TraceFilter

    if (queue is None) == (not filters):
        fail("give exactly one of --queue NAME or --filter …")
    try:
        flt = TraceFilter.parse(filters).to_dict() if filters else None
    except ValueError as e:
        fail(str(e))
    _run("argilla_push", enqueue_push, push, as_user, enqueue, queue=queue, flt=flt, dataset=dataset,
         overlap=overlap)


@argilla_app.command("pull")
def pull_cmd(dataset: Optional[str] = typer.Option(None, "--dataset", help="one dataset (default: all pushed)"),
             as_user: Optional[str] = typer.Option(None, "--as", help="acting admin (default: the first admin)"),
             enqueue: bool = typer.Option(False, "--enqueue", help="queue a job for the worker instead")) -> None:
    """Pull submitted responses as annotations (source argilla); discards become skips. Idempotent."""
    from curation.review.argilla.jobs import enqueue_pull
    from curation.review.argilla.pull import pull

    _run("argilla_pull", enqueue_pull, pull, as_user, enqueue, dataset=dataset)


@argilla_app.command("link")
def link_cmd(local_user: str = typer.Argument(..., help="local account"),
             argilla_user: str = typer.Argument(..., help="Argilla user name (\"\" unlinks)"),
             as_user: Optional[str] = typer.Option(None, "--as", help="acting admin (default: the first admin)")
             ) -> None:
    """Link an Argilla user to a local account: pulled responses of that Argilla user become this account's
    annotations. Users are never matched by name; an unlinked Argilla user gets an "argilla:NAME" account."""
    from core.errors import PermissionDenied
    from curation.auth import find_user, update_user

    eng = engine()
    user = find_user(eng, local_user)
    if user is None:
        fail(f"no user '{local_user}'")
    try:
        update_user(eng, actor_id(eng, as_user, default_admin=True), user.id, argilla_username=argilla_user)
    except (ValueError, PermissionDenied) as e:
        fail(str(e))
    out.print(f"'{local_user}' linked to Argilla user '{argilla_user}'" if argilla_user else
              f"'{local_user}' unlinked from Argilla")


@argilla_app.command("datasets")
def datasets_cmd() -> None:
    """Pushed datasets with local pull counts and Argilla's progress (one line each)."""
    from curation.review.argilla.push import list_datasets

    rows = list_datasets(engine())
    for d in rows:
        p = d["progress"] or {}
        prog = p.get("error") or f"{p.get('completed', 0)}/{p.get('total', 0)} completed"
        pulled = ", ".join(f"{k} {v}" for k, v in sorted(d["pulled"].items())) or "nothing"
        out.print(f"{d['workspace']}/{d['name']}: queue {d['queue'] or '(filter)'}, {d['records']} records, "
                  f"Argilla {prog}; pulled {pulled}; {d['conflicted_records']} conflicted records; "
                  f"pushed {d['pushed_at'] or '-'}, pulled {d['pulled_at'] or '-'}", highlight=False, soft_wrap=True)
    if not rows:
        out.print("no datasets pushed yet")
