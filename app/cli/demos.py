"""`rational demos list | promote | disable | enable`: the worked examples few-shot strategies show the model."""
from __future__ import annotations

import typer

from app.cli import common as cli
from app.cli.common import DataTable

demos_app = typer.Typer(no_args_is_help=True, help="The demo library few-shot strategies draw from.")


def register(app: typer.Typer) -> None:
    app.add_typer(demos_app, name="demos")


@demos_app.command("list")
def demos_list(all_: bool = typer.Option(False, "--all", help="include disabled demos")) -> None:
    """Demos with their behaviour, source and the trace they came from."""
    from curation.generation.demos import ensure_shipped, list_demos

    eng = cli.engine()
    ensure_shipped(eng)
    t = DataTable("id", "behaviour", "source", "trace", "active", "prompt", "reasoning")
    for d in list_demos(eng, active_only=not all_):
        t.add_row(str(d["id"]), d["behavior"], d["source"], str(d["trace_id"] or ""),
                  "yes" if d["is_active"] else "no", d["prompt"][:50], d["reasoning"][:60])
    cli.out.print(t)


@demos_app.command("promote")
def demos_promote(trace: int = typer.Argument(..., help="an approved (or your approved/edited) trace"),
                  as_user: str = typer.Option(..., "--as", help="the reviewer promoting it")) -> None:
    """Make a reviewed trace a demo: the next generation run can show it to the model."""
    from core.errors import PermissionDenied, UserError
    from curation.generation.demos import promote

    eng = cli.engine()
    try:
        d = promote(eng, cli.actor_id(eng, as_user), trace)
    except (UserError, PermissionDenied) as e:
        cli.fail(str(e))
    cli.out.print(f"demo {d['id']} ({d['behavior']}) from trace {trace}")


def _set_active(demo_id: int, as_user: str, active: bool) -> None:
    from core.errors import PermissionDenied, UserError
    from curation.generation.demos import set_active

    eng = cli.engine()
    try:
        set_active(eng, cli.actor_id(eng, as_user), demo_id, active)
    except (UserError, PermissionDenied) as e:
        cli.fail(str(e))
    cli.out.print(f"demo {demo_id} {'enabled' if active else 'disabled'}")


@demos_app.command("disable")
def demos_disable(demo_id: int, as_user: str = typer.Option(..., "--as")) -> None:
    """Stop showing a demo to the model (it stays in the library)."""
    _set_active(demo_id, as_user, False)


@demos_app.command("enable")
def demos_enable(demo_id: int, as_user: str = typer.Option(..., "--as")) -> None:
    _set_active(demo_id, as_user, True)
