"""`rational` command line. Exit 0 on success; 2 with a one-line reason on bad input.

Each command group lives in its own module and registers itself here; they share app.cli.common.
"""
from __future__ import annotations

import typer

from app.cli import argilla, demos, evaluation, generation, judges, loop, prompts, review, system, training

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
    app()


