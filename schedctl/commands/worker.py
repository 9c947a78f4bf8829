"""`schedctl worker`: see workers, drain them, remove dead ones."""

from __future__ import annotations

from typing import Annotated

import typer

from schedctl import views
from schedctl.choices import WorkerStatus
from schedctl.commands.common import OutputOpt, PageOpt, SizeOpt, WorkerId
from schedctl.context import Cli

app = typer.Typer(help="See workers, drain them, remove dead ones.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        WorkerStatus | None, typer.Option("--status", help="Only workers with this status.")
    ] = None,
    page: PageOpt = 1,
    size: SizeOpt = 50,
    output: OutputOpt = None,
) -> None:
    """List workers with their load and last heartbeat."""
    cli = Cli.of(ctx)
    result = cli.client.list_workers(status=status.value if status else None, page=page, size=size)
    cli.show(result, views.worker_list, output)


@app.command()
def show(ctx: typer.Context, worker: WorkerId, output: OutputOpt = None) -> None:
    """Show a worker."""
    cli = Cli.of(ctx)
    cli.show(cli.client.get_worker(worker), views.worker_detail, output)


@app.command()
def drain(ctx: typer.Context, worker: WorkerId, output: OutputOpt = None) -> None:
    """Stop a worker claiming runs; it finishes the ones it has, then exits."""
    cli = Cli.of(ctx)
    result = cli.client.drain_worker(worker)
    cli.show(result, lambda w: f"worker {w['id']} is {w['status']}", output)


@app.command()
def remove(ctx: typer.Context, worker: WorkerId, output: OutputOpt = None) -> None:
    """Forget an offline worker."""
    cli = Cli.of(ctx)
    cli.client.remove_worker(worker)
    result = {"id": worker, "removed": True}
    cli.show(result, lambda w: f"removed worker {w['id']}", output)
