"""`rational argilla …`: status, push, pull, datasets. Runs the sync in this process with a progress bar, or
queues it for the worker with --enqueue. Connection settings come from ARGILLA_API_URL / ARGILLA_API_KEY
(ARGILLA_WORKSPACE) or the Argilla page; the key is never printed."""
from __future__ import annotations

import json
from typing import List, Optional

import typer

argilla_app = typer.Typer(no_args_is_help=True, help="Argilla bulk annotation: push traces, pull responses.")

_LIST_FIELDS = ("set_names", "behaviors", "mutations", "statuses", "auto_labels", "annotator_ids", "run_ids")


def parse_filter(items: list[str]) -> dict:
    """--filter takes a JSON object, or field=value pairs (list fields take comma-separated values)."""
    flt: dict = {}
    for item in items:
        item = item.strip()
        if item.startswith("{"):
            try:
                flt.update(json.loads(item))
            except ValueError as e:
                raise ValueError(f"--filter: not valid JSON ({e})") from None
            continue
        if "=" not in item:
            raise ValueError(f"--filter '{item}' must look like field=value or be a JSON object")
        key, value = (p.strip() for p in item.split("=", 1))
        if key in _LIST_FIELDS:
            vals = [v.strip() for v in value.split(",") if v.strip()]
            flt[key] = [int(v) for v in vals] if key.endswith("_ids") else vals
        elif key == "flagged_only":
            flt[key] = value.lower() in ("1", "true", "yes")
        else:
            flt[key] = value
    return flt


def _actor(eng, username: Optional[str]) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from app.cli import fail
    from db.models import User

    with Session(eng) as s:
        q = select(User).where(User.is_active.is_(True))
        q = q.where(User.username == username) if username else q.where(User.role == "admin").order_by(User.id)
        u = s.execute(q).scalars().first()
    if u is None:
        fail(f"no active user '{username}'" if username else
             "no admin account: add one with 'rational users add NAME --role admin'")
    return u.id


def _run(kind: str, params: dict, enqueue: bool, fn) -> None:
    from app.cli import _with_progress, engine, fail, out
    from curation.argilla_sync import ArgillaError
    from curation.auth import PermissionDenied

    eng = engine()
    as_user = params.pop("as_user")
    params = {**params, "created_by": _actor(eng, as_user)}
    if enqueue:
        from db.jobs import enqueue as enqueue_job

        job = enqueue_job(eng, kind, params, created_by=params["created_by"])
        out.print(f"queued job {job.id} ({kind}); run 'rational worker' to execute it")
        return
    try:
        res = _with_progress(kind, lambda p: fn(eng, p, **params))
    except (ValueError, PermissionDenied, ArgillaError) as e:
        fail(str(e))
    out.print(json.dumps(res, indent=1, default=str), highlight=False)


@argilla_app.command("status")
def status_cmd() -> None:
    """Check the connection (URL and workspace from the environment or the saved settings)."""
    from app.cli import fail, out
    from curation.argilla_sync import status

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
    from app.cli import fail

    if (queue is None) == (not filters):
        fail("give exactly one of --queue NAME or --filter …")
    try:
        flt = parse_filter(filters) if filters else None
    except ValueError as e:
        fail(str(e))

    def go(eng, progress, created_by, **p):
        from curation.argilla_sync import push

        return push(eng, created_by, queue=p["queue"], flt=p["filter"], dataset=p["dataset"],
                    overlap=p["overlap"], progress=progress)

    _run("argilla_push", {"queue": queue, "filter": flt, "dataset": dataset, "overlap": overlap,
                          "as_user": as_user}, enqueue, go)


@argilla_app.command("pull")
def pull_cmd(dataset: Optional[str] = typer.Option(None, "--dataset", help="one dataset (default: all pushed)"),
             as_user: Optional[str] = typer.Option(None, "--as", help="acting admin (default: the first admin)"),
             enqueue: bool = typer.Option(False, "--enqueue", help="queue a job for the worker instead")) -> None:
    """Pull submitted responses as annotations (source argilla); discards become skips. Idempotent."""
    def go(eng, progress, created_by, **p):
        from curation.argilla_sync import pull

        return pull(eng, created_by, dataset=p["dataset"], progress=progress)

    _run("argilla_pull", {"dataset": dataset, "as_user": as_user}, enqueue, go)


@argilla_app.command("datasets")
def datasets_cmd() -> None:
    """Pushed datasets with local pull counts and Argilla's progress (one line each)."""
    from app.cli import engine, out
    from curation.argilla_sync import list_datasets

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
