"""`schedctl task`: define, inspect, trigger, pause and resume tasks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from schedctl import exits, render, views
from schedctl.choices import Executor, TaskStatus
from schedctl.commands.common import OutputOpt, PageOpt, SizeOpt, TaskRef
from schedctl.commands.taskfields import (
    ArgOpt,
    ConcurrencyOpt,
    CpuMaxOpt,
    DependsOpt,
    DescriptionOpt,
    EnvOpt,
    ExecutorOpt,
    MemoryMaxOpt,
    MetadataOpt,
    MisfireOpt,
    NotifyOpt,
    PidsMaxOpt,
    PriorityOpt,
    RetriesOpt,
    RetryDelayOpt,
    RunAsOpt,
    ScheduleOpt,
    TagOpt,
    TaskTypeOpt,
    TimeoutOpt,
    TzOpt,
    WorkingDirOpt,
    clear,
    task_body,
)
from schedctl.context import Cli, UsageProblem
from schedctl.render import Output
from schedctl.waiting import wait_for_run
from schedctl.zones import local_zone
from schedd.errors import NotFound

app = typer.Typer(help="Define, inspect, trigger, pause and resume tasks.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Unique task name (not only digits).")
    ],
    command: Annotated[
        str,
        typer.Argument(
            metavar="COMMAND",
            help="Shell command, Python script ('python job.py --flag' or a script path),"
            " URL, or package.module:function (per --executor).",
        ),
    ],
    executor: ExecutorOpt = None,
    schedule: ScheduleOpt = None,
    tz: TzOpt = None,
    arg: ArgOpt = None,
    tag: TagOpt = None,
    priority: PriorityOpt = None,
    retries: RetriesOpt = None,
    retry_delay: RetryDelayOpt = None,
    timeout: TimeoutOpt = None,
    depends_on: DependsOpt = None,
    metadata: MetadataOpt = None,
    notify: NotifyOpt = None,
    concurrency: ConcurrencyOpt = None,
    misfire: MisfireOpt = None,
    description: DescriptionOpt = None,
    task_type: TaskTypeOpt = None,
    env: EnvOpt = None,
    run_as: RunAsOpt = None,
    working_dir: WorkingDirOpt = None,
    memory_max: MemoryMaxOpt = None,
    cpu_max: CpuMaxOpt = None,
    pids_max: PidsMaxOpt = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    output: OutputOpt = None,
) -> None:
    """Create a task.

    \b
    Example:
      schedctl task create backup 'pg_dump app > /var/backups/app.sql' \\
        --schedule '0 30 2 * * *' --tz Europe/Berlin --retries 2
    """
    cli = Cli.of(ctx)
    body = task_body(
        cli.client,
        name=name,
        command=command,
        executor=executor or Executor.shell,
        schedule=schedule,
        tz=tz,
        arg=arg,
        tag=tag,
        priority=priority,
        retries=retries,
        retry_delay=retry_delay,
        timeout=timeout,
        depends_on=depends_on,
        metadata=metadata,
        notify=notify,
        concurrency=concurrency,
        misfire=misfire,
        description=description,
        task_type=task_type,
        status=TaskStatus.paused.value if paused else None,
        env=env,
        run_as=run_as,
        working_dir=working_dir,
        memory_max=memory_max,
        cpu_max=cpu_max,
        pids_max=pids_max,
    )
    task = cli.client.create_task(body)
    for warning in task.get("warnings", []):
        cli.warn(warning)
    cli.say(f"created task {task['id']} ({task['name']})", output)
    _show_task(cli, task, output)


def _show_task(cli: Cli, task: dict[str, Any], output: Output | None) -> None:
    """A task as a table with its dependencies by name (JSON: the API's, by id)."""
    names: dict[int, str] = {}
    if not cli.json(output):
        for dependency in task.get("dependencies") or []:
            try:
                names[dependency] = cli.client.get_task(str(dependency))["name"]
            except NotFound:  # deleted meanwhile (forced): shown by id
                continue
    cli.show(task, partial(views.task_detail, names=names), output)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        TaskStatus | None, typer.Option("--status", help="Only tasks with this status.")
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", metavar="TAG", help="Only tasks with this tag.")
    ] = None,
    executor: Annotated[
        Executor | None, typer.Option("--executor", help="Only tasks of this executor.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="TEXT", help="Name contains TEXT (any case).")
    ] = None,
    page: PageOpt = 1,
    size: SizeOpt = 50,
    output: OutputOpt = None,
) -> None:
    """List tasks."""
    cli = Cli.of(ctx)
    result = cli.client.list_tasks(
        status=status.value if status else None,
        tag=tag,
        executor=executor.value if executor else None,
        name=name,
        page=page,
        size=size,
    )
    cli.show(result, views.task_list, output)


@app.command()
def show(ctx: typer.Context, task: TaskRef, output: OutputOpt = None) -> None:
    """Show a task."""
    cli = Cli.of(ctx)
    _show_task(cli, cli.client.get_task(task), output)


@app.command()
def update(
    ctx: typer.Context,
    task: TaskRef,
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Rename the task.")
    ] = None,
    command: Annotated[
        str | None, typer.Option("--command", metavar="COMMAND", help="New command.")
    ] = None,
    executor: ExecutorOpt = None,
    schedule: ScheduleOpt = None,
    no_schedule: Annotated[
        bool, typer.Option("--no-schedule", help="Remove the schedule (trigger only).")
    ] = False,
    tz: TzOpt = None,
    arg: ArgOpt = None,
    no_args: Annotated[bool, typer.Option("--no-args", help="Remove all arguments.")] = False,
    tag: TagOpt = None,
    no_tags: Annotated[bool, typer.Option("--no-tags", help="Remove all tags.")] = False,
    priority: PriorityOpt = None,
    retries: RetriesOpt = None,
    retry_delay: RetryDelayOpt = None,
    timeout: TimeoutOpt = None,
    no_timeout: Annotated[
        bool, typer.Option("--no-timeout", help="Use the server's default timeout.")
    ] = False,
    depends_on: DependsOpt = None,
    no_depends_on: Annotated[
        bool, typer.Option("--no-depends-on", help="Remove all dependencies.")
    ] = False,
    metadata: MetadataOpt = None,
    notify: NotifyOpt = None,
    concurrency: ConcurrencyOpt = None,
    misfire: MisfireOpt = None,
    description: DescriptionOpt = None,
    task_type: TaskTypeOpt = None,
    env: EnvOpt = None,
    no_env: Annotated[
        bool, typer.Option("--no-env", help="Remove the task's own variables.")
    ] = False,
    run_as: RunAsOpt = None,
    no_run_as: Annotated[
        bool, typer.Option("--no-run-as", help="Run as the worker's run_as again.")
    ] = False,
    working_dir: WorkingDirOpt = None,
    no_working_dir: Annotated[
        bool, typer.Option("--no-working-dir", help="Start runs in the default directory.")
    ] = False,
    memory_max: MemoryMaxOpt = None,
    cpu_max: CpuMaxOpt = None,
    pids_max: PidsMaxOpt = None,
    no_limits: Annotated[
        bool, typer.Option("--no-limits", help="Remove the memory, CPU and process limits.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Change a task: only the fields given change (lists are replaced)."""
    cli = Cli.of(ctx)
    body = task_body(
        cli.client,
        name=name,
        command=command,
        executor=executor,
        schedule=schedule,
        tz=tz,
        arg=arg,
        tag=tag,
        priority=priority,
        retries=retries,
        retry_delay=retry_delay,
        timeout=timeout,
        depends_on=depends_on,
        metadata=metadata,
        notify=notify,
        concurrency=concurrency,
        misfire=misfire,
        description=description,
        task_type=task_type,
        env=env,
        run_as=run_as,
        working_dir=working_dir,
        memory_max=memory_max,
        cpu_max=cpu_max,
        pids_max=pids_max,
    )
    if no_limits:
        if {"memory_max_mb", "cpu_max", "pids_max"} & body.keys():
            raise UsageProblem("--no-limits and a limit flag exclude each other")
        body.update(memory_max_mb=None, cpu_max=None, pids_max=None)
    clear(body, no_env, "environment", {}, "env")
    clear(body, no_run_as, "run_as", None, "run-as")
    clear(body, no_working_dir, "working_dir", None, "working-dir")
    clear(body, no_schedule, "schedule", None, "schedule")
    clear(body, no_args, "arguments", [], "arg")
    clear(body, no_tags, "tags", [], "tag")
    clear(body, no_timeout, "timeout_seconds", None, "timeout")
    clear(body, no_depends_on, "dependencies", [], "depends-on")
    if not body:
        raise UsageProblem("nothing to change: give at least one field flag (see --help)")
    updated = cli.client.update_task(task, body)
    cli.say(f"updated task {updated['id']} ({updated['name']})", output)
    _show_task(cli, updated, output)


@app.command()
def delete(
    ctx: typer.Context,
    task: TaskRef,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even if other tasks depend on it.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Delete a task and its run history."""
    cli = Cli.of(ctx)
    found = cli.client.get_task(task)
    cli.client.delete_task(str(found["id"]), force=force)
    result = {"id": found["id"], "name": found["name"], "deleted": True}
    cli.show(result, lambda d: f"deleted task {d['id']} ({d['name']})", output)


def _print_output(cli: Cli) -> Callable[[dict[str, Any]], None]:
    def sink(piece: dict[str, Any]) -> None:
        cli.env.write(piece["data"])

    return sink


@app.command()
def trigger(
    ctx: typer.Context,
    task: TaskRef,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg", metavar="ARG", help="Run with these arguments instead of the task's."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the run; exit with its exit code.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="With --wait: print the output as it comes.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="SECONDS", min=0, help="Stop waiting after this long."),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Run a task now (also a paused one).

    With --wait, schedctl exits with the run's exit code: 124 if it timed out, 125 if
    cancelled, 75 if lost (see EXIT STATUS in schedctl(1)).
    """
    cli = Cli.of(ctx)
    if follow and cli.json(output):
        raise UsageProblem("--follow prints the run's output, not JSON: drop one of them")
    wait = wait or follow
    run = cli.client.trigger_task(task, arg)
    if not wait:
        cli.say(f"started run {run['id']} of task {task}", output)
        cli.show(run, views.run_detail, output)
        return
    final = wait_for_run(
        cli,
        run,
        label=f"run {run['id']} of {task}",
        follow=follow,
        timeout=timeout,
        sink=_print_output(cli),
    )
    if cli.json(output):
        cli.show(final, views.run_detail, output)
    elif follow:
        cli.note(views.run_summary(final))
    else:
        cli.say(views.run_summary(final), output)
    raise typer.Exit(exits.for_run(final))


@app.command()
def pause(ctx: typer.Context, task: TaskRef, output: OutputOpt = None) -> None:
    """Stop a task's schedule (runs already started go on)."""
    cli = Cli.of(ctx)
    result = cli.client.pause_task(task)
    cli.show(result, lambda t: f"task {t['id']} ({t['name']}) is {t['status']}", output)


@app.command()
def resume(ctx: typer.Context, task: TaskRef, output: OutputOpt = None) -> None:
    """Restart a paused task's schedule from now."""
    cli = Cli.of(ctx)
    result = cli.client.resume_task(task)
    cli.show(
        result,
        lambda t: (
            f"task {t['id']} ({t['name']}) is {t['status']}; next run "
            f"{render.when(t.get('next_run_at'))}"
        ),
        output,
    )


@app.command()
def runs(
    ctx: typer.Context,
    task: TaskRef,
    page: PageOpt = 1,
    size: SizeOpt = 20,
    output: OutputOpt = None,
) -> None:
    """List a task's runs, newest first."""
    cli = Cli.of(ctx)
    result = cli.client.task_runs(task, page=page, size=size)
    names = {} if task.isdigit() else {run["task_id"]: task for run in result["items"]}
    cli.show(result, lambda data: views.run_list(data, names), output)


@app.command("next")
def next_(
    ctx: typer.Context,
    task: TaskRef,
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=100, help="How many.")] = 5,
    output: OutputOpt = None,
) -> None:
    """Show a task's next fire times, in its time zone, in local time and in UTC."""
    cli = Cli.of(ctx)
    times = cli.client.next_fire_times(task, count)
    if cli.json(output):
        cli.show(times, views.fire_times, output)
        return
    zone_name = cli.client.get_task(task)["timezone"]
    view = partial(
        views.fire_times,
        task_zone=(ZoneInfo(zone_name), zone_name),
        local=local_zone(cli.env.environ),
    )
    cli.show(times, view, output)
