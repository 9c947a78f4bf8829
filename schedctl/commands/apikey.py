"""`schedctl apikey`: create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from schedctl import views
from schedctl.choices import SCOPES
from schedctl.commands.common import OutputOpt, PageOpt, SizeOpt
from schedctl.context import Cli
from schedctl.params import moment

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

ScopeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        metavar="SCOPE",
        help=f"Scope to grant; repeat for more, or 'all'. Scopes: {', '.join(SCOPES)}.",
    ),
]


def scopes_of(values: list[str] | None) -> list[str] | None:
    """The --scope values, with 'all' standing for every scope."""
    if values is None:
        return None
    return list(SCOPES) if "all" in values else values


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'ci-deploy'.")],
    scope: ScopeOpt = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", metavar="TIME", help="Expiry as an ISO-8601 time (default: never)."
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Create an API key; it is printed once, store it then.

    Without --scope the key has no scopes. With --db, any scopes can be granted (whoever
    can open the database is the administrator): the way back in after losing the
    admin key.
    """
    cli = Cli.of(ctx)
    expires_at = None if expires is None else moment(expires, "--expires")
    created = cli.client.create_api_key(name, scopes_of(scope) or [], expires_at)
    cli.show(created, views.apikey_created, output)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
    page: PageOpt = 1,
    size: SizeOpt = 50,
    output: OutputOpt = None,
) -> None:
    """List API keys (never the keys themselves, only their first characters)."""
    cli = Cli.of(ctx)
    keys = cli.client.list_api_keys(include_revoked=all_, page=page, size=size)
    cli.show(keys, views.apikey_list, output)


@app.command()
def revoke(
    ctx: typer.Context,
    key_id: Annotated[int, typer.Argument(metavar="KEY_ID", help="Key id (from apikey list).")],
    output: OutputOpt = None,
) -> None:
    """Revoke an API key at once, and every token minted from it."""
    cli = Cli.of(ctx)
    cli.client.revoke_api_key(key_id)
    cli.show({"id": key_id, "revoked": True}, lambda k: f"revoked API key {k['id']}", output)
