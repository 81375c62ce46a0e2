"""`rational` command line. Exit 0 on success; 2 with a one-line reason on bad input.

Each command group lives in its own module and registers itself here; they share app.cli.common.
"""
from __future__ import annotations

import typer

from app.cli import argilla, common, demos, evaluation, generation, judges, loop, prompts, review, system, training

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Rational Studio: safety reasoning traces, "
                  "review, export, training and evaluation.")
users_app = typer.Typer(no_args_is_help=True, help="Local accounts.")
app.add_typer(users_app, name="users")
system.register(app, users_app)
prompts.register(app)
review.register(app, users_app)
generation.register(app)
demos.register(app)
judges.register(app)
training.register(app)
evaluation.register(app)
argilla.register(app)
loop.register(app)


def main() -> None:
    """The console script: a database that cannot be reached or written is one line, not a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from db.engine import database_url

    try:
        app()
    except OperationalError as e:
        first = str(e.orig or e).strip().splitlines()[0] if str(e.orig or e).strip() else type(e).__name__
        common.err.print(f"error: cannot use the database {make_url(database_url()).render_as_string()}: {first}",
                         highlight=False, markup=False, soft_wrap=True)
        raise SystemExit(2) from None
    except OSError as e:  # e.g. RATIONAL_HOME cannot be created
        common.err.print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), highlight=False,
                         markup=False, soft_wrap=True)
        raise SystemExit(2) from None


