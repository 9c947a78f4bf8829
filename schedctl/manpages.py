"""Generate the man pages: schedctl(1), schedd(8) and schedd.toml(5).

Run ``python -m schedctl.manpages`` to rewrite ``man/``, ``--check`` to fail when the
committed pages are stale (tests/unit/test_schedctl_manpages.py does the same).

The command pages come from the Click command trees (the same help records ``--help``
prints); the exit status from :mod:`schedctl.exits`; the configuration page from the
settings models and the annotated reference (:mod:`schedctl.configdoc`). No date goes
into a page, so generating twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import typer.main
from typer._click import Context
from typer._click.core import Command

from schedd import __version__

MAN_DIR = Path(__file__).resolve().parent.parent / "man"
SKIPPED_OPTIONS = {"install_completion", "show_completion"}  # documented in a section


def esc(text: str) -> str:
    """Text safe for roff: backslashes, hyphens of options, leading dots and quotes."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in ".'" else line for line in text.split("\n"))


def paragraphs(help_text: str) -> str:
    """Help or doc text as roff: a ``\\b`` block (Click's "keep as written") and an
    indented block (a docstring's example) stay as written; the rest is filled."""
    out: list[str] = []
    for block in help_text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        if block.startswith("\b"):
            out += [".PP", ".nf", esc(block.removeprefix("\b").strip("\n")), ".fi"]
        elif lines and all(line.startswith("    ") for line in lines):
            out += [".PP", ".nf", esc(textwrap.dedent(block)), ".fi"]
        else:
            text = " ".join(block.split()).replace("``", "")
            out += [".PP", esc(text[:-1] if text.endswith("::") else text)]
    return "\n".join(out)


def header(name: str, section: int, summary: str) -> list[str]:
    return [
        f'.TH {name.upper().replace("-", "_")} {section} "" "sched {__version__}" "sched manual"',
        ".SH NAME",
        f"{esc(name)} \\- {esc(summary)}",
    ]


def walk(command: Command, ctx: Context) -> Iterator[tuple[Command, Context]]:
    """Every command below ``command`` (depth first, in --help order)."""
    children = getattr(command, "commands", None)
    if children is None:
        yield command, ctx
        return
    for name in command.list_commands(ctx):  # type: ignore[attr-defined]
        child = children.get(name) or command.get_command(ctx, name)  # type: ignore[attr-defined]
        if child is None or child.hidden:
            continue
        yield from walk(child, Context(child, info_name=name, parent=ctx))


def usage(command: Command, ctx: Context) -> str:
    pieces = [piece.strip("{}") for piece in command.collect_usage_pieces(ctx)]
    return " ".join([ctx.command_path, *pieces])


def options(command: Command, ctx: Context) -> list[str]:
    out: list[str] = []
    for param in command.params:
        if param.name in SKIPPED_OPTIONS:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        out += [".TP", bold(names), esc(" ".join(text.split()))]
    return out


def command_page(command: Command, name: str, section: int, summary: str, extra: list[str]) -> str:
    root = Context(command, info_name=name)
    lines = header(name, section, summary)
    lines += [".SH SYNOPSIS", f".B {esc(usage(command, root))}"]
    lines += [".SH DESCRIPTION", paragraphs(command.help or "")]
    if command.params:
        lines += [".SH OPTIONS", *options(command, root)]
    lines.append(".SH COMMANDS")
    for sub, ctx in walk(command, root):
        if sub is command:
            continue
        lines += [f'.SS "{esc(usage(sub, ctx))}"', paragraphs(sub.help or "")]
        lines += options(sub, ctx)
    lines += extra
    return "\n".join(lines) + "\n"


def bold(text: str) -> str:
    """A bold text line (not a .B macro line, which would eat quotes)."""
    return f"\\fB{esc(text)}\\fR"


def table(rows: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for term, text in rows:
        out += [".TP", bold(term), esc(text)]
    return out


# What each API scope allows (the man page's SCOPES table; every scope has a row).
SCOPE_HELP = {
    "task.read": "List and show tasks, their runs, run output and next fire times.",
    "task.write": (
        "Create and update tasks. A task that runs by itself (one with a schedule or "
        "dependencies) also needs task.execute to be created, to gain a schedule or "
        "dependencies, to be activated, or to change what it runs (command, arguments, "
        "executor, run_as, environment, working_dir, metadata.http): such a change starts "
        "code without anyone triggering it."
    ),
    "task.execute": "Trigger, pause and resume tasks; cancel and retry runs.",
    "task.delete": "Delete tasks (and their runs).",
    "worker.read": "List and show workers.",
    "worker.write": "Heartbeat as a worker, drain and remove workers.",
    "system.read": "System stats, system logs, the audit log, API keys; /metrics when "
    "metrics_auth is set.",
    "system.write": "Create and revoke API keys.",
}


# -- the pages -------------------------------------------------------------------------


def schedctl_page() -> str:
    from schedctl import taskset
    from schedctl.app import app
    from schedctl.exits import DESCRIPTIONS
    from schedd.schemas import SCOPES

    command = typer.main.get_command(app)
    task_file = taskset.__doc__ or ""
    extra = [
        ".SH TASK FILES",
        paragraphs(task_file.split("\n\n", 1)[1]),
        ".SH EXIT STATUS",
        *table(
            [(f"{int(code)} ({code.name.lower()})", text) for code, text in DESCRIPTIONS.items()]
        ),
        ".PP",
        esc(
            "task trigger --wait exits with the run's own exit code when it has one, so a "
            "script can tell a run's failure apart only by also reading -o json."
        ),
        ".SH SCOPES",
        paragraphs(
            "What an API key or token may do. Direct mode (--db) uses the database itself "
            "and checks no scope: whoever holds the database URL is an administrator."
        ),
        *table([(scope, SCOPE_HELP[scope]) for scope in SCOPES]),
        ".SH ENVIRONMENT",
        *table(
            [
                ("SCHED_API", "The API address, as --api."),
                ("SCHED_TOKEN", "The API key or token, as --token."),
                ("DATABASE_URL", "Direct mode on this database, as --db (--api wins)."),
                ("SCHEDD_CONFIG", "The configuration file, as --config."),
                ("SCHED_DEBUG", "Show tracebacks, as --debug."),
                ("NO_COLOR", "When set and not empty, no colours."),
            ]
        ),
        ".SH FILES",
        *table(
            [
                (
                    "$XDG_DATA_HOME/sched/api.url",
                    "The local schedd's API address (the data directory is [daemon] data_dir).",
                ),
                (
                    "$XDG_DATA_HOME/sched/admin.key",
                    "The admin API key of the embedded default, used for the local API only.",
                ),
            ]
        ),
        ".SH SHELL COMPLETION",
        paragraphs(
            "schedctl --install-completion installs completion for the current shell (bash, "
            "zsh, fish, PowerShell); schedctl --show-completion prints the script instead. "
            "Task names (TASK) and run ids (RUN) are completed from the API the command would "
            "use (the local schedd's, or --api/SCHED_API with --token/SCHED_TOKEN), in one "
            "request of at most a second; without an answer nothing is completed and nothing "
            "is printed. Direct mode (--db) completes no names."
        ),
        ".SH SEE ALSO",
        "schedd(8), schedd.toml(5)",
    ]
    return command_page(command, "schedctl", 1, "operate sched: tasks, runs, workers", extra)


def schedd_page() -> str:
    from schedd import cli
    from schedd.config import SEED_VARIABLES

    command = typer.main.get_command(cli.app)
    codes = [
        ("0", "Clean stop after SIGTERM or SIGINT."),
        (str(cli.EXIT_USAGE), "Bad command line (an unknown --role)."),
        (
            str(cli.EXIT_UNAVAILABLE),
            "The database or broker is unavailable, or the schema is behind.",
        ),
        (str(cli.EXIT_SOFTWARE), "Internal error."),
        (
            str(cli.EXIT_CONFIG),
            "Invalid configuration: the line names the file or variable and key.",
        ),
    ]
    variables = [(name, f"Sets {key}.") for name, key in SEED_VARIABLES.items()]
    variables += [
        ("RABBITMQ_URL, REDIS_URL", "Set message_queue.url when the type names that broker."),
        ("SCHEDD_<SECTION>__<KEY>", "Sets any key, e.g. SCHEDD_API__PORT=9090."),
        ("SCHEDD_CONFIG", "The configuration file, as --config."),
        (
            "NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID",
            "Set by systemd for Type=notify units (etc/*.service): schedd sends READY=1 "
            "once every role serves, STOPPING=1 when it stops and WATCHDOG=1 while its "
            "main loop turns; removed before any task runs.",
        ),
    ]
    extra = [
        ".SH SIGNALS",
        *table(
            [
                (
                    "SIGTERM, SIGINT",
                    "Stop gracefully: stop claiming, let runs finish, then exit 0.",
                ),
                ("second SIGTERM or SIGINT", "Stop at once."),
            ]
        ),
        ".SH EXIT STATUS",
        *table(codes),
        ".SH ENVIRONMENT",
        *table(variables),
        ".SH FILES",
        *table(
            [
                (
                    "./schedd.toml, $XDG_CONFIG_HOME/sched/schedd.toml, /etc/schedd/schedd.toml",
                    "Configuration, first found (after --config and SCHEDD_CONFIG).",
                ),
                (
                    "$XDG_DATA_HOME/sched/",
                    "The data directory ([daemon] data_dir): sched.db, "
                    "jwt.secret, admin.key, api.url.",
                ),
            ]
        ),
        ".SH SEE ALSO",
        "schedctl(1), schedd.toml(5)",
    ]
    return command_page(command, "schedd", 8, "the sched daemon", extra)


def config_page() -> str:
    from schedctl.configdoc import defaults, load_reference
    from schedd.config import Settings
    from schedd.configfile import env_var, sections

    reference = load_reference()
    fixed = defaults()
    lines = header("schedd.toml", 5, "configuration of schedd and schedctl --db")
    lines += [".SH DESCRIPTION", paragraphs("\n".join(reference.header).replace("\n\n", "\n\n"))]
    for name, model in sections(Settings).items():
        section = reference.sections[name]
        lines += [f'.SH "[{name}]"']
        if section.lines:
            lines.append(paragraphs(" ".join(section.lines)))
        for key in model.model_fields:
            doc = section.keys[key]
            default = fixed[name].get(key)
            term = key if default is None else f"{key} = {_toml(default)}"
            # The reference ends each block with "Env: ..." (possibly over several lines).
            cut = next((i for i, x in enumerate(doc.lines) if x.startswith("Env:")), None)
            text = " ".join(doc.lines[:cut])
            envs = " ".join(doc.lines[cut:]).removeprefix("Env:").strip() if cut is not None else ""
            lines += [".TP", bold(term), esc(text)]
            lines += [".br", esc(f"Environment: {envs or env_var(name, key)}")]
    lines += [".SH EXAMPLE", esc("Alerts: mail on failure, chat on recovery, a dead-man's")]
    lines += [esc("switch on a nightly backup (etc/alerts.example.toml):"), ".PP", ".nf"]
    lines += [esc(line) for line in alerts_example().rstrip("\n").splitlines()]
    lines += [".fi", ".SH SEE ALSO", "schedd(8), schedctl(1)"]
    return "\n".join(lines) + "\n"


def alerts_example() -> str:
    """The worked alerts example shipped beside the reference configuration."""
    from schedctl.configdoc import reference_path

    return reference_path().with_name("alerts.example.toml").read_text(encoding="utf-8")


def _toml(value: object) -> str:
    from schedctl.configdoc import toml_value

    return toml_value(value)


PAGES = {"schedctl.1": schedctl_page, "schedd.8": schedd_page, "schedd.toml.5": config_page}


def generate() -> dict[str, str]:
    return {name: make() for name, make in PAGES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", nargs="?", type=Path, default=MAN_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = args.directory / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale man pages: {', '.join(stale)} (run: python -m schedctl.manpages)")
        return 1
    for name in stale:
        print(f"wrote {args.directory / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
