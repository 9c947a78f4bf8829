"""The task fields as flags, shared by `task create` and `task update`.

Every field of the data model has a flag; a flag not given is not sent, so the server's
defaults apply on create and nothing else changes on update. ``--no-*`` flags clear a
field on update.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from schedctl.choices import ConcurrencyPolicy, Executor, MisfirePolicy, Priority
from schedctl.client import Client
from schedctl.context import UsageProblem
from schedctl.params import json_object

PANEL = "Task fields"

ExecutorOpt = Annotated[
    Executor | None,
    typer.Option(
        "--executor", "-e", help="How the command runs (default: shell).", show_default=False
    ),
]
ScheduleOpt = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        "-s",
        metavar="CRON",
        help="Cron: 6 fields with seconds first, 5 fields, or @daily; none: trigger only.",
    ),
]
TzOpt = Annotated[
    str | None,
    typer.Option("--tz", metavar="ZONE", help="IANA time zone of the schedule (default UTC)."),
]
ArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        metavar="ARG",
        help="Argument passed to the command; repeat for more (function tasks: each a"
        " JSON document, e.g. --arg 42 --arg '\"text\"').",
    ),
]
TagOpt = Annotated[
    list[str] | None, typer.Option("--tag", metavar="TAG", help="Tag; repeat for more.")
]
PriorityOpt = Annotated[Priority | None, typer.Option("--priority", help="Claim order.")]
RetriesOpt = Annotated[
    int | None,
    typer.Option("--retries", metavar="N", min=0, help="Retries after a failed run (default 0)."),
]
RetryDelayOpt = Annotated[
    float | None,
    typer.Option(
        "--retry-delay", metavar="SECONDS", min=0, help="First retry delay, doubling each time."
    ),
]
TimeoutOpt = Annotated[
    int | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=1,
        help="Kill a run after this long (default: server's).",
    ),
]
DependsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--depends-on", metavar="TASK", help="Upstream task (id or name); repeat for more."
    ),
]
MetadataOpt = Annotated[
    str | None,
    typer.Option("--metadata", metavar="JSON", help='JSON object, e.g. \'{"owner": "ops"}\'.'),
]
NotifyOpt = Annotated[
    str | None,
    typer.Option(
        "--notify",
        metavar="JSON",
        help='Alert rules, e.g. \'{"failed": ["ops-mail"], "absent": ["chat"], "grace": "2h"}\'.',
    ),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        metavar="NAME=VALUE",
        help="Variable added to the runs' environment; repeat for more (replaces the set).",
    ),
]
RunAsOpt = Annotated[
    str | None,
    typer.Option(
        "--run-as",
        metavar="USER[:GROUP]",
        help="Run as this user (one of the worker's allowed_run_as; default its run_as).",
    ),
]
WorkingDirOpt = Annotated[
    str | None,
    typer.Option(
        "--working-dir", metavar="DIR", help="Absolute directory runs start in (default: home)."
    ),
]
MemoryMaxOpt = Annotated[
    int | None,
    typer.Option("--memory-max", metavar="MB", help="Memory limit of a run (its cgroup)."),
]
CpuMaxOpt = Annotated[
    float | None,
    typer.Option("--cpu-max", metavar="CORES", help="CPU limit of a run, e.g. 0.5 cores."),
]
PidsMaxOpt = Annotated[
    int | None,
    typer.Option("--pids-max", metavar="N", help="Most processes a run may have at once."),
]
ConcurrencyOpt = Annotated[
    ConcurrencyPolicy | None,
    typer.Option("--concurrency", help="A fire while a run is active: allow, forbid, replace."),
]
MisfireOpt = Annotated[
    MisfirePolicy | None,
    typer.Option("--misfire", help="Missed fire times: fire_once, skip, fire_all."),
]
DescriptionOpt = Annotated[
    str | None, typer.Option("--description", "-d", metavar="TEXT", help="What the task is for.")
]
TaskTypeOpt = Annotated[
    str | None,
    typer.Option(
        "--task-type",
        metavar="TYPE",
        help="Routes runs to workers serving TYPE (default: the executor name).",
    ),
]


def task_body(
    client: Client,
    *,
    name: str | None = None,
    command: str | None = None,
    executor: Executor | None = None,
    schedule: str | None = None,
    tz: str | None = None,
    arg: list[str] | None = None,
    tag: list[str] | None = None,
    priority: Priority | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    timeout: int | None = None,
    depends_on: list[str] | None = None,
    metadata: str | None = None,
    concurrency: ConcurrencyPolicy | None = None,
    misfire: MisfirePolicy | None = None,
    description: str | None = None,
    task_type: str | None = None,
    status: str | None = None,
    env: list[str] | None = None,
    run_as: str | None = None,
    working_dir: str | None = None,
    memory_max: int | None = None,
    cpu_max: float | None = None,
    pids_max: int | None = None,
    notify: str | None = None,
) -> dict[str, Any]:
    """The API body for the flags given (dependencies resolved to ids)."""
    values: dict[str, Any] = {
        "name": name,
        "command": command,
        "executor": executor.value if executor else None,
        "schedule": schedule,
        "timezone": tz,
        "arguments": arg,
        "tags": tag,
        "priority": priority.value if priority else None,
        "retry_count": retries,
        "retry_delay_seconds": retry_delay,
        "timeout_seconds": timeout,
        "metadata": json_object(metadata, "--metadata"),
        "concurrency_policy": concurrency.value if concurrency else None,
        "misfire_policy": misfire.value if misfire else None,
        "description": description,
        "task_type": task_type,
        "status": status,
        "environment": env_pairs(env),
        "run_as": run_as,
        "working_dir": working_dir,
        "memory_max_mb": memory_max,
        "cpu_max": cpu_max,
        "pids_max": pids_max,
        "notify": json_object(notify, "--notify"),
    }
    body = {key: value for key, value in values.items() if value is not None}
    if depends_on is not None:
        body["dependencies"] = client.task_ids(depends_on)
    return body


def env_pairs(values: list[str] | None) -> dict[str, str] | None:
    """``--env NAME=VALUE`` flags as a table; the server checks the names."""
    if values is None:
        return None
    table: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageProblem(f"--env: expected NAME=VALUE, got {item!r}")
        table[name] = value
    return table


def clear(body: dict[str, Any], flag: bool, field: str, empty: Any, given: str) -> None:
    """Apply a ``--no-FIELD`` flag; refuse it beside the flag that sets the field."""
    if not flag:
        return
    if field in body:
        raise UsageProblem(f"--no-{given} and --{given} exclude each other")
    body[field] = empty
