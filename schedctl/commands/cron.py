"""`schedctl cron`: work with cron expressions locally, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from schedd import cron

# sysexits(3) EX_DATAERR: the input (expression, zone, --after) is invalid.
EXIT_INVALID_INPUT = 65

app = typer.Typer(
    help="Preview cron schedules locally (no server needed).",
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


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
    output: OutputFormat = typer.Option(
        OutputFormat.table, "--output", "-o", case_sensitive=False, help="table or json."
    ),
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
    if output is OutputFormat.json:
        rows = [
            {"utc": _utc_text(fire), "local": moment.isoformat()}
            for fire, moment in zip(fires, local, strict=True)
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=escape(f"{expression} ({tz})"))
    table.add_column("#", justify="right")
    table.add_column(escape(f"Local time ({tz})"))
    table.add_column("UTC")
    for index, (fire, moment) in enumerate(zip(fires, local, strict=True), start=1):
        table.add_row(str(index), escape(_local_text(moment)), _utc_text(fire))
    Console(highlight=False).print(table)


def _local_text(moment: datetime) -> str:
    """``2025-03-30 03:00:00 +02:00 CEST``: wall time, UTC offset, zone abbreviation."""
    offset = moment.isoformat()[19:]  # "+02:00" (seconds too for historic LMT offsets)
    return f"{moment:%Y-%m-%d %H:%M:%S} {offset} {moment.tzname()}"
