"""The `schedctl` command: the operator's CLI."""

from __future__ import annotations

import sys

import typer

from schedctl.commands import cron

app = typer.Typer(
    name="schedctl",
    help="Operate sched: tasks, runs, workers, logs and stats.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cron.app, name="cron")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
