"""`schedctl run`: inspect runs, read their output, cancel or re-run them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from schedctl import render, views
from schedctl.choices import RunStatus
from schedctl.commands.common import OutputOpt, PageOpt, RunId, SizeOpt
from schedctl.context import Cli
from schedctl.params import moment
from schedctl.waiting import Clock, follow_output

app = typer.Typer(
    help="Inspect runs, read their output, cancel or re-run them.", no_args_is_help=True
)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        RunStatus | None, typer.Option("--status", help="Only runs with this status.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", metavar="TASK", help="Only this task's (id or name).")
    ] = None,
    worker: Annotated[
        str | None, typer.Option("--worker", metavar="WORKER", help="Only this worker's.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="TIME", help="Created since: ISO-8601 time or age (30m, 2h, 1d)."
        ),
    ] = None,
    page: PageOpt = 1,
    size: SizeOpt = 20,
    output: OutputOpt = None,
) -> None:
    """List runs, newest first."""
    cli = Cli.of(ctx)
    result = cli.client.list_runs(
        status=status.value if status else None,
        task=task,
        worker=worker,
        since=moment(since, "--since"),
        page=page,
        size=size,
    )
    names: dict[int, str] = {}
    if not cli.json(output):
        names = cli.client.task_names({run["task_id"] for run in result["items"]})
    cli.show(result, lambda data: views.run_list(data, names), output)


@app.command()
def show(ctx: typer.Context, run: RunId, output: OutputOpt = None) -> None:
    """Show a run: status, times, exit code, error."""
    cli = Cli.of(ctx)
    found = cli.client.get_run(run)
    name = (
        None
        if cli.json(output)
        else cli.client.task_names([found["task_id"]]).get(found["task_id"])
    )
    cli.show(found, lambda data: views.run_detail(data, name), output)


@app.command()
def logs(
    ctx: typer.Context,
    run: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    offset: Annotated[
        int,
        typer.Option("--offset", metavar="BYTES", min=0, help="Start at this byte of the output."),
    ] = 0,
    output: OutputOpt = None,
) -> None:
    """Print a run's output (stdout and stderr together).

    With -o json: one object {data, offset, next_offset, finished}; with -f, one such
    object per line as output arrives.
    """
    cli = Cli.of(ctx)
    as_json = cli.json(output)
    pieces: list[dict[str, Any]] = []

    def sink(piece: dict[str, Any]) -> None:
        if not as_json:
            cli.env.write(piece["data"])
        elif follow:
            cli.env.write(render.json_line(piece))
        else:
            pieces.append(piece)

    reached = follow_output(
        cli.client, run, sink, Clock(None), offset=offset, until_finished=follow
    )
    if as_json and not follow:
        data = "".join(piece["data"] for piece in pieces)
        finished = cli.client.run_output(run, reached)["finished"]
        document = {"data": data, "offset": offset, "next_offset": reached, "finished": finished}
        cli.env.write(render.to_json(document))


@app.command()
def cancel(ctx: typer.Context, run: RunId, output: OutputOpt = None) -> None:
    """Cancel a run: a waiting or pending one at once, a running one within seconds."""
    cli = Cli.of(ctx)
    result = cli.client.cancel_run(run)

    def view(data: dict[str, Any]) -> str:
        if data["status"] == "running":
            return f"run {data['id']}: cancel requested (its worker stops it within seconds)"
        return f"run {data['id']}: {data['status']}"

    cli.show(result, view, output)


@app.command()
def retry(ctx: typer.Context, run: RunId, output: OutputOpt = None) -> None:
    """Run an ended run again, as a new manual run with the same arguments."""
    cli = Cli.of(ctx)
    result = cli.client.retry_run(run)
    cli.say(f"started run {result['id']} (again of run {run})", output)
    cli.show(result, views.run_detail, output)
