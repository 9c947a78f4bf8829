"""`schedctl apply` and `schedctl export`: task sets as TOML files (see schedctl.taskset).

schedctl.taskset is imported when one of these commands runs: it needs the API's
models, which other commands in HTTP mode never load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.text import Text

from schedctl import render
from schedctl.commands.common import OutputOpt
from schedctl.context import Cli
from schedd import __version__

SIGNS = {"created": ("+", "green"), "changed": ("~", "yellow"), "deleted": ("-", "red")}


def plan_view(summary: dict[str, Any], *, list_kept: bool = True) -> list[RenderableType]:
    """The plan, a line per task; the server's tasks the file does not name are one
    summary line unless ``list_kept``."""
    counts = [
        f"{len(summary['created'])} to create",
        f"{len(summary['changed'])} to change",
        f"{len(summary['unchanged'])} unchanged",
        f"{len(summary['deleted'])} to delete",
    ]
    lines: list[RenderableType] = [Text(f"{summary['file']}: {', '.join(counts)}", style="bold")]
    for name in summary["created"]:
        lines.append(Text(f"  + create    {name}", style="green"))
    for item in summary["changed"]:
        fields = ", ".join(item["fields"])
        lines.append(Text(f"  ~ change    {item['name']} ({fields})", style="yellow"))
    for name in summary["unchanged"]:
        lines.append(Text(f"  = unchanged {name}", style="dim"))
    for name in summary["deleted"]:
        lines.append(Text(f"  - delete    {name}", style="red"))
    kept = summary["not_in_file"]
    if kept and not list_kept:
        many = f"{len(kept)} other tasks" if len(kept) != 1 else "1 other task"
        lines.append(
            Text(
                f"  ? keep      {many} on the server, not in the file (-v lists them, "
                "--prune deletes them)",
                style="dim",
            )
        )
        return lines
    for name in kept:
        lines.append(
            Text(f"  ? keep      {name} (not in the file; --prune deletes it)", style="dim")
        )
    return lines


def apply(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            metavar="FILE",
            help="Task file (TOML), see schedctl(1).",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan, change nothing.")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete tasks the file does not name.")
    ] = False,
    tag: Annotated[
        str | None,
        typer.Option("--tag", metavar="TAG", help="With --prune: only delete tasks with this tag."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="List each server task the file does not name."),
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Make the tasks match a task file (TOML): show the plan, then apply it.

    A task file has one [tasks.NAME] table per task whose keys are the task fields
    (executor, command, schedule, timezone, arguments, retry_count, ...), with
    dependencies given by name. Applying the same file again changes nothing.
    """
    from schedctl import taskset

    cli = Cli.of(ctx)
    desired = taskset.load(file)
    plan = taskset.plan(cli.client, str(file), desired, prune=prune, tag=tag)
    as_json = cli.json(output)
    if not as_json:
        summary = plan.summary(applied=False)
        render.print_all(cli.env, plan_view(summary, list_kept=verbose or prune))
    if dry_run or plan.empty:
        if as_json:
            cli.env.write(render.to_json(plan.summary(applied=False)))
        else:
            cli.note("dry run: nothing changed" if dry_run else "no changes")
        return

    def report(action: str, name: str) -> None:
        if not as_json:
            sign, style = SIGNS[action]
            render.print_all(cli.env, [Text(f"{sign} {action} {name}", style=style)])

    taskset.apply(cli.client, plan, report, cli.warn)
    if as_json:
        cli.env.write(render.to_json(plan.summary(applied=True)))
    else:
        done = plan.summary(applied=True)
        cli.note(
            f"applied: {len(done['created'])} created, {len(done['changed'])} changed, "
            f"{len(done['deleted'])} deleted"
        )


def export(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", metavar="FILE", help="Write here instead of stdout."),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", metavar="TAG", help="Only tasks with this tag.")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Write the server's tasks as a task file for `schedctl apply`."""
    from schedctl import taskset

    cli = Cli.of(ctx)
    tasks = cli.client.all_tasks(tag=tag)
    names = (
        {task["id"]: task["name"] for task in cli.client.all_tasks()}
        if tag
        else {task["id"]: task["name"] for task in tasks}
    )
    document = taskset.export(tasks, names)
    if cli.json(output):
        text = render.to_json(document)
    else:
        header = f"# sched task set, exported by schedctl {__version__}; apply with\n"
        header += "# schedctl apply -f FILE (--prune deletes tasks not listed here).\n\n"
        text = taskset.to_toml(document, header)
    if file is None:
        cli.env.write(text)
        return
    file.write_text(text, encoding="utf-8")
    cli.note(f"wrote {len(tasks)} tasks to {file}")
