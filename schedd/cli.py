"""The `schedd` command: run the daemon, migrate the database, show and check config."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from schedd import __version__
from schedd.errors import ConfigError, SchedError, Unavailable, first_line

# The configuration, the daemon and the database layer (pydantic, SQLAlchemy, Alembic)
# are imported by the commands that use them: `schedd --help` must not pay for them
# (tests/unit/test_cli_startup.py).
if TYPE_CHECKING:
    from schedd.config import Settings

# sysexits(3) codes, as init systems and scripts expect them.
EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_CONFIG = 78

app = typer.Typer(
    name="schedd",
    help="The sched daemon: API, scheduler and worker roles over one database.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (else $SCHEDD_CONFIG, ./schedd.toml, ~/.config/sched/schedd.toml, "
        "/etc/schedd/schedd.toml).",
        show_default=False,
        # Checked when read: an unreadable file is one config error line and exit 78
        # (which the units do not restart on), not a usage error.
        readable=False,
    ),
]
RoleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--role",
        "-r",
        help="Role to run (api, scheduler, worker); repeat for several. Default: "
        "the daemon.roles setting, which is all three.",
        show_default=False,
    ),
]


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"schedd: error: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit(config: Path | None, overrides: dict[str, object] | None = None) -> Settings:
    from schedd.config import load_settings

    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


@dataclass(frozen=True)
class GlobalOptions:
    """--config and --role as given before the subcommand (``schedd -c FILE run``)."""

    config: Path | None = None
    role: list[str] | None = None


def _with_globals(
    ctx: typer.Context | None,
    config: Path | None,
    role: list[str] | None = None,
    *,
    command: str,
    takes_role: bool,
) -> tuple[Path | None, list[str] | None]:
    """The subcommand's --config and --role merged with those given before it: the
    same meaning on either side, a usage error (64) where they would conflict or do
    nothing, never an option silently dropped."""
    given = ctx.find_root().obj if ctx is not None else None
    if not isinstance(given, GlobalOptions):
        return config, role
    if given.config is not None:
        if config is not None and config != given.config:
            fail(
                f"--config given twice ({given.config} before `{command}`, {config} after "
                "it); give it once",
                EXIT_USAGE,
            )
        config = given.config
    if given.role:
        if not takes_role:
            fail(
                f"--role does not apply to `schedd {command}`; it goes with `schedd run` "
                "or `schedd config check`",
                EXIT_USAGE,
            )
        role = [*given.role, *(role or [])]
    return config, role


def _version(value: bool) -> None:
    if value:
        typer.echo(f"schedd {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    config: ConfigOption = None,
    role: RoleOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """With no command, `schedd` runs the daemon (the same as `schedd run`). --config
    and --role mean the same before or after the command."""
    ctx.obj = GlobalOptions(config, role)
    if ctx.invoked_subcommand is None:
        _run(config, role)


def _roles_or_exit(role: list[str] | None) -> list[str]:
    """The --role values, once each; exit 64 naming an unknown one."""
    from schedd.configsections import ROLES as ROLE_NAMES

    unknown = [r for r in role or [] if r not in ROLE_NAMES]
    if unknown:
        fail(
            f"--role: unknown role {unknown[0]!r} (expected {', '.join(ROLE_NAMES)})",
            EXIT_USAGE,
        )
    return list(dict.fromkeys(role or []))


@app.command()
def run(ctx: typer.Context, config: ConfigOption = None, role: RoleOption = None) -> None:
    """Run the daemon until SIGTERM or SIGINT (exit 0 after a clean stop)."""
    _run(*_with_globals(ctx, config, role, command="run", takes_role=True))


def _run(config: Path | None, role: list[str] | None) -> None:
    roles = _roles_or_exit(role)
    settings = settings_or_exit(config, {"daemon.roles": roles} if roles else {})
    from schedd.api.processes import share_metrics

    share_metrics(settings, settings.daemon.roles)  # before prometheus_client's import
    from schedd import logs
    from schedd.daemon import Daemon

    logs.setup(settings.observability.log_level, settings.observability.log_format)
    try:
        code = Daemon(settings, list(settings.daemon.roles)).run()
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except Unavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except SchedError as exc:
        fail(str(exc), EXIT_SOFTWARE)
    raise typer.Exit(code)


@app.command("migrate")
def migrate_cmd(
    ctx: typer.Context,
    config: ConfigOption = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Database to migrate (else the configured one)."),
    ] = None,
) -> None:
    """Create or upgrade the database schema to this version's head revision."""
    from schedd.db import create_database, describe_url, migrate

    config, _ = _with_globals(ctx, config, command="migrate", takes_role=False)
    overrides: dict[str, object] = {"database.url": database_url} if database_url else {}
    settings = settings_or_exit(config, overrides)
    url = settings.database.url
    try:
        db = create_database(url, connection_timeout=settings.database.connection_timeout)
        before, after = migrate(db)
        db.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one line
        fail(f"cannot migrate {describe_url(url)}: {first_line(exc)}", EXIT_UNAVAILABLE)
    if before == after:
        typer.echo(f"{describe_url(url)}: schema already at {after}")
    else:
        typer.echo(f"{describe_url(url)}: migrated {before or 'empty'} -> {after}")


@config_app.command("show")
def config_show(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Print the effective configuration as TOML, secrets redacted."""
    from schedd.config import render_toml

    config, _ = _with_globals(ctx, config, command="config show", takes_role=False)
    settings = settings_or_exit(config)
    if settings.source:
        typer.echo(f"# loaded from {settings.source}")
    typer.echo(render_toml(settings, redact=True), nl=False)


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="File to check (else the one schedd would load).", readable=False),
    ] = None,
    role: RoleOption = None,
) -> None:
    """Validate the configuration as schedd would load it (the file, then the
    environment: DATABASE_URL, RABBITMQ_URL, JWT_SECRET, SCHEDD_*) and what its roles
    need to start (the API's JWT secret, the broker URL); exit 0 when good."""
    from schedd.config import load_settings

    config, role = _with_globals(ctx, None, role, command="config check", takes_role=True)
    if file is not None and config is not None and file != config:
        fail(f"--config {config} and the file {file} disagree; give one", EXIT_USAGE)
    roles = _roles_or_exit(role)
    overrides: dict[str, object] = {"daemon.roles": roles} if roles else {}
    try:
        settings = load_settings(file if file is not None else config, overrides=overrides)
        from schedd import preflight

        preflight.check(settings, settings.daemon.roles, host=False)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    source = str(file) if file is not None else settings.source
    typer.echo(f"{source or 'built-in defaults and environment'}: ok")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
