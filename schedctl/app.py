"""The `schedctl` command: the operator's CLI.

The root group owns what every command shares: the global options, and the one place
where an error becomes one line on stderr and an exit code (:mod:`schedctl.exits`).
Commands raise; they never print an error or pick an exit code for one themselves.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import ParameterSource
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from schedctl import exits
from schedctl.commands import (
    apikey,
    apply,
    config,
    cron,
    db,
    notify,
    run,
    system,
    task,
    token,
    top,
    worker,
)
from schedctl.context import Cli, Options, UsageProblem
from schedctl.env import Environment
from schedctl.exits import ExitStatus
from schedctl.render import Output
from schedd import __version__
from schedd.errors import InvalidInput, SchedError


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one-line message and the exit status for an error that ended a command."""
    if isinstance(exc, UsageError):
        message = exc.format_message()
        if exc.ctx is not None:
            message += f" (see '{exc.ctx.command_path} --help')"
        return message, ExitStatus.USAGE
    if isinstance(exc, ClickException):
        return exc.format_message(), exc.exit_code
    if isinstance(exc, UsageProblem):
        return str(exc), ExitStatus.USAGE
    if isinstance(exc, SchedError):
        message = exc.message
        if isinstance(exc, InvalidInput) and exc.field and not message.startswith(exc.field):
            message = f"{exc.field}: {message}"  # as the API words it: the same in both modes
        return message, exits.for_error(exc)
    return (
        f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
        ExitStatus.INTERNAL,
    )


# The order of `schedctl --help`: daily work first, setup last.
COMMAND_ORDER = (
    "task",
    "run",
    "worker",
    "system",
    "top",
    "apply",
    "export",
    "apikey",
    "token",
    "whoami",
    "db",
    "config",
    "cron",
)


class SchedctlGroup(TyperGroup):
    """The root group: runs a command and turns whatever it raised into an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        given = extra.pop("obj", None)
        env = given if isinstance(given, Environment) else Environment()
        cli = Cli(env)
        try:
            result = super().main(
                args, prog_name or "schedctl", complete_var, standalone_mode=False, obj=cli, **extra
            )
            code = result if isinstance(result, int) else ExitStatus.OK
        except NoArgsIsHelpError:
            code = ExitStatus.USAGE  # the help was printed already
        except typer.Abort:
            code = ExitStatus.INTERRUPTED
        except Exception as exc:
            message, code = error_line(exc)
            if cli.options.debug:
                traceback.print_exception(exc, file=env.stderr)
            env.error("error: " + " ".join(message.split()))
        finally:
            cli.close()
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


app = typer.Typer(
    cls=SchedctlGroup,
    name="schedctl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"schedctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            envvar="SCHED_API",
            metavar="URL",
            help="API address (default: the local schedd's, from its data directory).",
            show_default=False,
        ),
    ] = None,
    token_: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SCHED_TOKEN",
            metavar="TOKEN",
            help="API key or token (default: the local schedd's admin key).",
            show_default=False,
        ),
    ] = None,
    db_: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="DATABASE_URL",
            metavar="URL",
            help="Work on this database directly instead of the API (sqlite:///PATH, "
            "postgresql://...).",
            show_default=False,
        ),
    ] = None,
    config_: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="SCHEDD_CONFIG",
            metavar="FILE",
            help="schedd.toml to read (data directory, --db defaults, config commands).",
            show_default=False,
            readable=False,  # an unreadable file is a config error (78) when it is read
        ),
    ] = None,
    output: Annotated[
        Output,
        typer.Option(
            "--output",
            "-o",
            case_sensitive=False,
            help="table for people, json for scripts.",
        ),
    ] = Output.table,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (also: NO_COLOR set).")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="SCHED_DEBUG", help="Show the traceback of an error."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Operate sched: tasks, runs, workers, logs and stats.

    schedctl talks to the HTTP API (on the schedd host it finds the address and the
    admin key by itself), or with --db straight to the database. Errors are one line
    on stderr with a named exit code: see EXIT STATUS in schedctl(1).
    """
    cli = Cli.of(ctx)

    def source(name: str, variable: str, flag: str) -> str:
        from_env = ctx.get_parameter_source(name) == ParameterSource.ENVIRONMENT
        return variable if from_env else flag

    db_from_command_line = ctx.get_parameter_source("db_") == ParameterSource.COMMANDLINE
    api_from_command_line = ctx.get_parameter_source("api") == ParameterSource.COMMANDLINE
    if db_from_command_line and api_from_command_line:
        raise UsageProblem("--api and --db exclude each other: choose the API or the database")
    cli.options = Options(
        api=api or None,
        api_source=source("api", "SCHED_API", "--api"),
        token=token_ or None,
        token_source=source("token_", "SCHED_TOKEN", "--token"),
        db=db_ or None,
        db_from_command_line=db_from_command_line,
        config=config_,
        output=output,
        debug=debug,
    )
    if no_color:
        cli.env.no_color = True


app.add_typer(task.app, name="task")
app.add_typer(run.app, name="run")
app.add_typer(worker.app, name="worker")
app.add_typer(system.app, name="system")
app.add_typer(notify.app, name="notify")
app.command("top")(top.top)
app.command("apply")(apply.apply)
app.command("export")(apply.export)
app.add_typer(apikey.app, name="apikey")
app.add_typer(token.app, name="token")
app.command("whoami")(token.whoami)
app.add_typer(db.app, name="db")
app.add_typer(config.app, name="config")
app.add_typer(cron.app, name="cron")


def main() -> None:
    app()
