"""`rational users list|set-role` and `rational queues create|list|progress`: the review workflow from the shell.

A command acts as a named user (`--as NAME`, default the first active admin), so the same role checks apply as in
the web app; a queue is named by its name or id.
"""
from __future__ import annotations

import json
from typing import List, Optional

import typer

from app.cli import common as cli
from app.cli.common import DataTable

queues_app = typer.Typer(no_args_is_help=True, help="Review queues.")


def register(app: typer.Typer, users_app: typer.Typer) -> None:
    app.add_typer(queues_app, name="queues")
    users_app.command("list")(users_list)
    users_app.command("set-role")(users_set_role)


ACTING_HELP = "who acts (default: the first active admin)"


def _actor(eng, name: str):
    from curation.auth import find_user

    u = find_user(eng, name)
    if u is None:
        cli.fail(f"no user named '{name}'")
    return u


def users_list() -> None:
    """Local accounts and their roles."""
    from curation.auth import list_users

    t = DataTable("id", "user", "role", "active")
    for u in list_users(cli.engine()):
        t.add_row(str(u.id), u.username, u.role, "yes" if u.is_active else "no")
    cli.out.print(t)


def users_set_role(name: str, role: str = typer.Option(..., "--role"),
                   acting: str = typer.Option(..., "--as", help="the admin making the change")) -> None:
    from core.errors import PermissionDenied
    from curation.auth import update_user

    eng = cli.engine()
    try:
        u = update_user(eng, _actor(eng, acting), _actor(eng, name).id, role=role)
    except (ValueError, PermissionDenied) as e:
        cli.fail(str(e))
    cli.out.print(f"user '{u.username}' is now {u.role}")


@queues_app.command("create")
def queues_create(name: str, acting: Optional[str] = typer.Option(None, "--as", help=ACTING_HELP),
                  filter_json: str = typer.Option("{}", "--filter", help='e.g. {"set_names": ["xstest"], '
                                                  '"behaviors": ["refuse"], "flagged_only": true}'),
                  overlap: int = typer.Option(1, "--overlap"),
                  members: List[str] = typer.Option([], "--member", help="user name (repeat)")) -> None:
    """Create a queue from a trace filter."""
    from core.errors import PermissionDenied
    from curation.review.queues import create_queue

    try:
        flt = json.loads(filter_json)
    except json.JSONDecodeError as e:
        cli.fail(f"--filter is not JSON: {e}")
    eng = cli.engine()
    try:
        q = create_queue(eng, cli.actor_id(eng, acting, default_admin=True), name, flt, overlap=overlap,
                         members=[_actor(eng, m).id for m in members])
    except (ValueError, PermissionDenied) as e:
        cli.fail(str(e))
    cli.out.print(f"queue '{q.name}' created (id {q.id})")


@queues_app.command("list")
def queues_list(acting: Optional[str] = typer.Option(None, "--as", help=ACTING_HELP)) -> None:
    from curation.review.queues import list_queues

    eng = cli.engine()
    t = DataTable("id", "name", "overlap", "items", "done", "active")
    for q in list_queues(eng, cli.actor_id(eng, acting, default_admin=True)):
        t.add_row(str(q["id"]), q["name"], str(q["overlap"]), str(q["items"]), str(q["done"]),
                  "yes" if q["is_active"] else "no")
    cli.out.print(t)


@queues_app.command("progress")
def queues_progress(queue: str = typer.Argument(..., help="the queue's name or id"),
                    acting: Optional[str] = typer.Option(None, "--as", help=ACTING_HELP)) -> None:
    from core.errors import PermissionDenied
    from curation.review.queues import list_queues, queue_progress

    eng = cli.engine()
    actor = cli.actor_id(eng, acting, default_admin=True)
    try:
        by_name = {q["name"]: q["id"] for q in list_queues(eng, actor)}
        queue_id = by_name.get(queue) or (int(queue) if queue.isdigit() else None)
        if queue_id is None:
            cli.fail(f"no queue named '{queue}'")
        p = queue_progress(eng, actor, queue_id)
    except (ValueError, PermissionDenied) as e:
        cli.fail(str(e))
    cli.out.print(f"{p['queue']['name']}: {p['decided']}/{p['items']} decided ({p['fraction']:.0%}), "
                  f"{p['disputed']} wait for adjudication", markup=False, highlight=False)
    t = DataTable("member", "role", "annotations")
    for m in p["members"]:
        t.add_row(m["username"], m["role"], str(m["annotations"]))
    cli.out.print(t)


