"""`schedctl notify`: the alert channels, a test message, and what was sent."""

from __future__ import annotations

from typing import Annotated

import typer

from schedctl import views
from schedctl.commands.common import OutputOpt, PageOpt, SizeOpt
from schedctl.context import Cli

app = typer.Typer(help="Alert channels, test messages and deliveries.", no_args_is_help=True)

STATES = ("pending", "sent", "failed", "digested")


@app.command()
def channels(ctx: typer.Context, output: OutputOpt = None) -> None:
    """List the configured channels (URLs show scheme and host only)."""
    cli = Cli.of(ctx)
    cli.show(cli.client.notify_channels(), views.channel_list, output)


@app.command()
def test(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(metavar="CHANNEL", help="A channel name.")],
    output: OutputOpt = None,
) -> None:
    """Send a test message now; exits non-zero with the receiver's error."""
    cli = Cli.of(ctx)
    result = cli.client.notify_test(channel)
    cli.show(result, lambda r: f"delivered a test message to channel {r['channel']}", output)


@app.command("list")
def list_(
    ctx: typer.Context,
    task: Annotated[
        str | None, typer.Option("--task", "-t", metavar="TASK", help="Task id or name.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", metavar="STATE", help="pending, sent, failed or digested."),
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", metavar="NAME", help="Only this channel.")
    ] = None,
    page: PageOpt = 1,
    size: SizeOpt = 50,
    output: OutputOpt = None,
) -> None:
    """List alert deliveries, newest first, with their state and last error."""
    cli = Cli.of(ctx)
    result = cli.client.notify_deliveries(
        task=task, status=status, channel=channel, page=page, size=size
    )
    cli.show(result, views.delivery_list, output)
