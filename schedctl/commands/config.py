"""`schedctl config`: write, show and check schedd.toml.

The settings modules are imported when a config command runs, not at every start.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from schedctl import render
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli
from schedd.errors import ConfigError, Conflict

app = typer.Typer(help="Write, show and check schedd.toml.", no_args_is_help=True)


@app.command()
def init(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="Where to write it; '-' for stdout.", show_default=True)
    ] = Path("schedd.toml"),
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="SECTION.KEY=VALUE",
            help="Set a key, e.g. --set api.port=9090; repeat for more.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write an annotated schedd.toml: every key, its default and what it does."""
    from schedctl.configdoc import annotated_toml, parse_assignment
    from schedd.config import check_file

    cli = Cli.of(ctx)
    values: dict[str, dict[str, object]] = {}
    for assignment in set_ or []:
        section, key, value = parse_assignment(assignment)
        values.setdefault(section, {})[key] = value
    text = annotated_toml(values)
    to_stdout = str(file) == "-"
    if not to_stdout and file.exists() and not force:
        raise Conflict(f"{file} exists; use --force to overwrite it")
    # Checked as a file before it replaces anything: a bad --set leaves no bad file.
    folder = Path.cwd() if to_stdout else (file.parent if str(file.parent) else Path.cwd())
    handle, scratch = tempfile.mkstemp(prefix=".schedd-", suffix=".toml", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(scratch, 0o600)  # it may come to hold a database password or JWT secret
        try:
            check_file(scratch)
        except ConfigError as exc:
            raise ConfigError("--set", exc.key, exc.reason) from None
        if to_stdout:
            cli.env.write(text)
            return
        os.replace(scratch, file)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    cli.note(f"wrote {file}; check it with: schedctl config check {file}")


@app.command()
def show(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Print the effective configuration (file, environment, --db), secrets redacted."""
    from schedd.config import render_toml

    cli = Cli.of(ctx)
    settings = cli.settings()
    text = render_toml(settings, redact=True)
    if cli.json(output):
        cli.env.write(render.to_json({"source": settings.source, **tomllib.loads(text)}))
        return
    if settings.source:
        cli.env.write(f"# loaded from {settings.source}\n")
    cli.env.write(text)


@app.command()
def check(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="File to check (else the one schedd would load).")
    ] = None,
) -> None:
    """Validate a config file (or the effective configuration); exit 78 when it is bad."""
    from schedd.config import check_file

    cli = Cli.of(ctx)
    if file is not None:
        check_file(file)
        source = str(file)
    else:
        source = cli.settings().source or "built-in defaults and environment"
    cli.env.write(f"{source}: ok\n")
