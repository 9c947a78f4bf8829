"""`schedctl db`: the database schema, directly on the database (no API involved).

schedd.db (SQLAlchemy, Alembic) is imported when a db command runs, not at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from schedctl import render
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli
from schedd.errors import SchedError, Unavailable

if TYPE_CHECKING:
    from schedd.db import Database

app = typer.Typer(
    help="Create, upgrade, downgrade and check the database schema.\n\nWorks on the "
    "database itself (--db, DATABASE_URL or the configured one), never through the API.",
    short_help="Create, upgrade, downgrade and check the database schema.",
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


class NotConfirmed(SchedError):
    """The operator declined (or did not answer) a question: exit 1, nothing changed."""


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
def downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str,
        typer.Argument(
            metavar="REVISION",
            help="Revision to go back to: an id (0004_worker_isolation), its number "
            "(0004), or base (no schema).",
            show_default=False,
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output: OutputOpt = None,
) -> None:
    """Downgrade the schema to REVISION, undoing the newer migrations (asks first).

    Columns and tables a reverted migration added are dropped with their data. Stop
    every schedd using the database first, and install the version that REVISION
    belongs to: a newer schedd refuses to start on an older schema.
    """
    from schedd import db as schema

    cli = Cli.of(ctx)
    with _database(cli) as (database, shown):
        plan = schema.plan_downgrade(database, revision)
        target = plan.target or "base (no schema)"
        result: dict[str, Any] = {
            "database": shown,
            "before": plan.current,
            "after": plan.target,
            "reverted": plan.reverted,
            "changed": bool(plan.reverted),
        }
        if not plan.reverted:
            cli.show(result, lambda d: f"{d['database']}: schema already at {target}", output)
            return
        if not yes:
            question = (
                f"Downgrade {shown} from {plan.current} to {target}, undoing "
                f"{', '.join(plan.reverted)}? Data in what they added is dropped."
            )
            try:
                confirmed = typer.confirm(question, default=False, err=True)
            except typer.Abort:  # no answer (stdin closed)
                confirmed = False
            if not confirmed:
                raise NotConfirmed(
                    "downgrade not confirmed: nothing changed (--yes skips the question)"
                )
        schema.downgrade(database, plan.target or "base")
    cli.show(
        result,
        lambda d: f"{d['database']}: downgraded {d['before']} -> {target}",
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
