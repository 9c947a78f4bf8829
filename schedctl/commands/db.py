"""`schedctl db`: the database schema, directly on the database (no API involved).

schedd.db (SQLAlchemy, Alembic) is imported when a db command runs, not at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from schedctl import render
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli
from schedd.errors import Unavailable

if TYPE_CHECKING:
    from schedd.db import Database

app = typer.Typer(
    help="Create, upgrade and check the database schema.\n\nWorks on the database itself "
    "(--db, DATABASE_URL or the configured one), never through the API.",
    short_help="Create, upgrade and check the database schema.",
    no_args_is_help=True,
)


@contextmanager
def _database(cli: Cli, *, create: bool = False) -> Iterator[tuple[Database, str]]:
    import sqlalchemy as sa

    from schedd import db as schema

    settings = cli.settings()
    url = settings.database.url
    shown = schema.describe_url(url)
    path = schema.sqlite_file(url)
    if path is not None and not create and not Path(path).exists():
        # Opening it would create an empty file: a check must not change anything.
        raise Unavailable(f"no database at {path} (`schedctl db upgrade` creates it)")
    try:
        database = schema.create_database(
            url, max_connections=1, connection_timeout=settings.database.connection_timeout
        )
        try:
            yield database, shown
        finally:
            database.dispose()
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Unavailable(f"cannot use the database {shown}: {reason}") from exc


def _fields(data: dict[str, Any]) -> Any:
    return render.fields([(key, render.plain(value)) for key, value in data.items()])


@app.command()
def upgrade(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Create or upgrade the schema to this version (what `schedd migrate` does)."""
    from schedd import db as schema

    cli = Cli.of(ctx)
    with _database(cli, create=True) as (database, shown):
        before, after = schema.migrate(database)
    result = {"database": shown, "before": before, "after": after, "changed": before != after}
    cli.show(
        result,
        lambda d: (
            f"{d['database']}: migrated {d['before'] or 'empty'} -> {d['after']}"
            if d["changed"]
            else f"{d['database']}: schema already at {d['after']}"
        ),
        output,
    )


@app.command()
def current(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Show the schema revision of the database and the one this version needs."""
    from schedd import db as schema

    cli = Cli.of(ctx)
    with _database(cli) as (database, shown):
        revision = schema.current_revision(database)
    head = schema.head_revision()
    result = {"database": shown, "revision": revision, "head": head, "current": revision == head}
    cli.show(result, _fields, output)


@app.command()
def check(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Exit 0 when the schema is this version's, 69 when it is missing, behind or ahead."""
    from schedd import db as schema

    cli = Cli.of(ctx)
    with _database(cli) as (database, shown):
        schema.check_schema(database)
    result = {"database": shown, "revision": schema.head_revision(), "ok": True}
    cli.show(result, lambda d: f"{d['database']}: schema at {d['revision']}: ok", output)
