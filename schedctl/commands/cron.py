"""`schedctl cron`: work with cron expressions locally, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from schedctl import render
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli
from schedctl.exits import ExitStatus
from schedctl.render import Output
from schedctl.views import zoned_text
from schedd import cron

# The input (expression, zone, --after) is invalid. Reported here rather than raised,
# so the command also works mounted on its own (tests/unit/test_cron_cli.py).
EXIT_INVALID_INPUT = ExitStatus.INVALID_INPUT

app = typer.Typer(
    help="Preview cron schedules locally (no server needed).",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_INVALID_INPUT)


def _parse_after(text: str | None, tz: ZoneInfo) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--after {text!r} is not an ISO-8601 date-time") from None
    # A time without an offset is a wall time in the schedule's zone (first occurrence).
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command("next")
def next_fire_times(
    ctx: typer.Context,
    expression: str = typer.Argument(
        ...,
        metavar="EXPR",
        help="Cron expression: 6 fields (sec min hour dom month dow), 5 fields, or @daily.",
    ),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone the schedule runs in."),
    count: int = typer.Option(5, "-n", "--count", min=1, max=1000, help="How many fire times."),
    after: str | None = typer.Option(
        None,
        "--after",
        help="Start after this ISO-8601 time (default: now); without an offset it is in --tz.",
    ),
    output: OutputOpt = None,
) -> None:
    """Print the next fire times of EXPR, in the zone's local time and in UTC."""
    try:
        schedule = cron.parse(expression, tz)
        zone = cron.zone(tz)
        start = _parse_after(after, zone)
        fires = schedule.between(start, datetime.max.replace(tzinfo=UTC), limit=count)
    except (cron.CronError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if not fires:
        raise _fail(f"no fire time after {start.isoformat()} (computed up to year 9998)")
    local = [fire.astimezone(zone) for fire in fires]
    root = ctx.find_root().obj
    if isinstance(root, Cli):
        output = root.output(output)  # the global --output applies too
    if output is Output.json:
        rows = [
            {"utc": _utc_text(fire), "local": moment.isoformat()}
            for fire, moment in zip(fires, local, strict=True)
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = render.columns("#", f"LOCAL TIME ({tz})", "UTC", title=f"{expression} ({tz})")
    for index, (fire, moment) in enumerate(zip(fires, local, strict=True), start=1):
        table.add_row(str(index), zoned_text(moment), _utc_text(fire))
    if isinstance(root, Cli):
        root.show(table, lambda t: t, Output.table)
    else:
        Console(highlight=False).print(table)
