"""The `schedctl` command: the operator's CLI.

The root group owns what every command shares: the global options, and the one place
where an error becomes one line on stderr and an exit code (:mod:`schedctl.exits`).
Commands raise; they never print an error or pick an exit code for one themselves.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import Command, Context, ParameterSource
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer._click.formatting import HelpFormatter
from typer.core import TyperCommand, TyperGroup

from schedctl import exits
from schedctl.context import Cli, Options, UsageProblem
from schedctl.env import Environment
from schedctl.exits import ExitStatus
from schedctl.output import Output
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


# The commands, each imported when it is run (or its help is asked for): a shell script
# calling `schedctl task list` in a loop must not pay for importing every other command
# (and Rich, the cron parser, the task file reader ... they import).
# name: (module, attribute, a Typer app or a command function, the summary the root
# help lists). tests/unit/test_cli_startup.py holds each summary to the loaded
# command's own help.
LAZY_COMMANDS: dict[str, tuple[str, str, bool, str]] = {
    "task": (
        "schedctl.commands.task",
        "app",
        True,
        "Define, inspect, trigger, pause and resume tasks.",
    ),
    "run": (
        "schedctl.commands.run",
        "app",
        True,
        "Inspect runs, read their output, cancel or re-run them.",
    ),
    "worker": (
        "schedctl.commands.worker",
        "app",
        True,
        "See workers, drain them, remove dead ones.",
    ),
    "system": (
        "schedctl.commands.system",
        "app",
        True,
        "Health, statistics, system events and the audit log.",
    ),
    "notify": (
        "schedctl.commands.notify",
        "app",
        True,
        "Alert channels, test messages and deliveries.",
    ),
    "top": (
        "schedctl.commands.top",
        "top",
        False,
        "Live view: workers, running runs, queue, recent failures (q quits).",
    ),
    "apply": (
        "schedctl.commands.apply",
        "apply",
        False,
        "Make the tasks match a task file (TOML): show the plan, then apply it.",
    ),
    "export": (
        "schedctl.commands.apply",
        "export",
        False,
        "Write the server's tasks as a task file for `schedctl apply`.",
    ),
    "apikey": ("schedctl.commands.apikey", "app", True, "Create, list and revoke API keys."),
    "token": (
        "schedctl.commands.token",
        "app",
        True,
        "Mint short-lived tokens from the current credential.",
    ),
    "whoami": (
        "schedctl.commands.token",
        "whoami",
        False,
        "Show who the API takes you for, and your scopes.",
    ),
    "db": (
        "schedctl.commands.db",
        "app",
        True,
        "Create, upgrade, downgrade and check the database schema.",
    ),
    "config": ("schedctl.commands.config", "app", True, "Write, show and check schedd.toml."),
    "cron": (
        "schedctl.commands.cron",
        "app",
        True,
        "Preview cron schedules locally (no server needed).",
    ),
}

# Commands whose summary is their own short_help (listed whole, never shortened).
GIVEN_SHORT_HELP = frozenset({"db"})


def load_command(name: str) -> Command:
    """The Click command ``name`` as the root app would have built it with the command
    registered on it (same markup mode and exception settings)."""
    module_name, attribute, is_app, _ = LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
    holder = typer.Typer(
        pretty_exceptions_enable=app.pretty_exceptions_enable,
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
        suggest_commands=app.suggest_commands,
    )
    if is_app:
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class SchedctlGroup(TyperGroup):
    """The root group: runs a command and turns whatever it raised into an exit code.
    Its commands load on first use (:data:`LAZY_COMMANDS`)."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = [*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if n not in self.commands)]
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def get_command(self, ctx: Any, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        """Typer's, with the suggestion for a misspelt command drawn from every command
        (Typer's draws from those loaded)."""
        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as exc:
            if self.suggest_commands and args:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    suggestions = ", ".join(f"{m!r}" for m in matches)
                    exc.message = f"{exc.message.rstrip('.')}. Did you mean {suggestions}?"
            raise

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """As Click lists the commands, from the summaries of those not loaded yet
        (`schedctl --help` imports none of them)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                summary = LAZY_COMMANDS[name][3]
                short = summary if name in GIVEN_SHORT_HELP else None
                command = TyperCommand(name, help=summary, short_help=short)
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl(
                    [(name, command.get_short_help_str(limit)) for name, command in rows]
                )

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


def main() -> None:
    app()
