"""`schedctl system`: health, statistics, system events and the audit log."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from schedctl import render, views
from schedctl.commands.common import OutputOpt, PageOpt, SizeOpt
from schedctl.context import Cli
from schedctl.exits import ExitStatus
from schedctl.params import moment

app = typer.Typer(help="Health, statistics, system events and the audit log.", no_args_is_help=True)

FOLLOW_INTERVAL = 1.0


@app.command()
def health(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Check the server and its database; exit 1 unless healthy."""
    cli = Cli.of(ctx)
    result = cli.client.health()
    cli.show(result, views.health, output)
    # --db asks the components itself and knows why one did not answer (the API logs it).
    for component, reason in getattr(cli.client, "health_reasons", {}).items():
        cli.note(f"{component}: {reason}")
    if result.get("status") != "ok":
        raise typer.Exit(ExitStatus.ERROR)


@app.command()
def stats(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Tasks, runs, workers and queue depth at a glance."""
    cli = Cli.of(ctx)
    cli.show(cli.client.stats(), views.stats, output)


@app.command()
def logs(
    ctx: typer.Context,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            "-l",
            metavar="LEVEL",
            help="At or above: debug, info, warning, error, critical.",
        ),
    ] = None,
    component: Annotated[
        str | None,
        typer.Option(
            "--component", metavar="NAME", help="Only this part: scheduler, worker, api, daemon..."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="From: ISO-8601 time or age (30m, 2h)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="TIME", help="Before: ISO-8601 time or age."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C stops).")
    ] = False,
    page: PageOpt = 1,
    size: SizeOpt = 50,
    output: OutputOpt = None,
) -> None:
    """Show stored system events (fires, failures, workers going offline).

    The table shows the newest page, oldest first; -o json gives that page as the API
    does, newest first.
    """
    cli = Cli.of(ctx)
    filters: dict[str, Any] = {
        "level": level,
        "component": component,
        "start_time": moment(since, "--since"),
        "end_time": moment(until, "--until"),
    }
    result = cli.client.system_logs(**filters, page=page, size=size)
    if not follow:
        cli.show(
            result, lambda data: views.log_list({**data, "items": data["items"][::-1]}), output
        )
        return
    seen: set[int] = set()
    as_json = cli.json(output)
    entries = result["items"][::-1]
    filters["end_time"] = None
    while True:
        fresh = [entry for entry in entries if entry["id"] not in seen]
        for entry in fresh:
            seen.add(entry["id"])
            if as_json:
                cli.env.write(render.json_line(entry))
        if fresh and not as_json:
            table = views.log_rows(fresh)
            table.show_header = not seen - {e["id"] for e in fresh}
            render.print_all(cli.env, [table])
        if fresh:
            filters["start_time"] = fresh[-1]["time"]
        time.sleep(FOLLOW_INTERVAL)
        entries = cli.client.system_logs(**filters, page=1, size=500)["items"][::-1]


@app.command()
def audit(
    ctx: typer.Context,
    page: PageOpt = 1,
    size: SizeOpt = 50,
    output: OutputOpt = None,
) -> None:
    """Show the audit log: who changed what, newest first."""
    cli = Cli.of(ctx)
    cli.show(cli.client.audit_log(page=page, size=size), views.audit_list, output)
