"""`schedctl top`: the live view."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.live import Live

from schedctl import render
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli
from schedctl.top import keys, stdin_is_terminal, take, view


def top(
    ctx: typer.Context,
    interval: Annotated[
        float,
        typer.Option("--interval", "-n", min=0.2, metavar="SECONDS", help="Refresh every SECONDS."),
    ] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one snapshot and exit (also with -o json).")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Live view: workers, running runs, queue, recent failures (q quits)."""
    cli = Cli.of(ctx)
    client = cli.client
    if once or cli.json(output):
        snapshot = take(client)
        if cli.json(output):
            cli.env.write(render.to_json(snapshot.as_json()))
        else:
            fill = bool(cli.env.stdout_isatty)
            render.print_all(cli.env, [view(snapshot, client.describe(), None, fill=fill)])
        return
    console = cli.env.console()
    try:
        with (
            keys(cli.env.stdin, stdin_is_terminal(cli.env.stdin)) as read,
            Live(console=console, screen=True, auto_refresh=False) as live,
        ):
            while True:
                live.update(view(take(client), client.describe(), interval), refresh=True)
                deadline = time.monotonic() + interval
                while (left := deadline - time.monotonic()) > 0:
                    if "q" in read(left).lower():
                        return
    except KeyboardInterrupt:
        return
