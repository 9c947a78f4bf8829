"""`schedctl token`: mint short-lived tokens; `schedctl whoami`."""

from __future__ import annotations

from typing import Annotated

import typer

from schedctl import views
from schedctl.commands.apikey import ScopeOpt, scopes_of
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli

app = typer.Typer(help="Mint short-lived tokens from the current credential.", no_args_is_help=True)


@app.command()
def issue(
    ctx: typer.Context,
    scope: ScopeOpt = None,
    ttl: Annotated[
        int | None,
        typer.Option("--ttl", metavar="SECONDS", min=1, help="Lifetime (default: the server's)."),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Issue a token with some or all of the current credential's scopes.

    \b
    Example, for a CI job:
      export SCHED_TOKEN=$(schedctl -o json token issue \\
        --scope task.execute --ttl 600 | jq -r .token)
    """
    cli = Cli.of(ctx)
    cli.show(cli.client.issue_token(scopes_of(scope), ttl), views.token, output)


def whoami(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Show who the API takes you for, and your scopes."""
    cli = Cli.of(ctx)
    cli.show(cli.client.whoami(), views.whoami, output)
