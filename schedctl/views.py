"""How each kind of object looks as a table (the JSON needs no view: it is the API's)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from schedctl import render as r

Json = dict[str, Any]


# -- tasks ----------------------------------------------------------------------------


def schedule_text(task: Json) -> str:
    if not task.get("schedule"):
        return "-"
    zone = task.get("timezone") or "UTC"
    return task["schedule"] if zone == "UTC" else f"{task['schedule']} ({zone})"


def task_list(page: Json) -> list[RenderableType]:
    table = r.columns("ID", "NAME", "STATUS", "SCHEDULE", "NEXT RUN", "LAST RUN", "TAGS")
    now = r.now()
    for task in page["items"]:
        table.add_row(
            str(task["id"]),
            Text(task["name"]),
            r.status(task["status"]),
            schedule_text(task),
            r.relative(task.get("next_run_at"), now),
            r.relative(task.get("last_run_at"), now),
            r.plain(task.get("tags")),
        )
    return [table, r.footer(page, "tasks")]


def task_detail(task: Json, names: dict[int, str] | None = None) -> Table:
    """A task's fields; ``names`` (id -> name) shows its dependencies by name."""
    now = r.now()
    timeout = task.get("timeout_seconds")
    rows: list[tuple[str, RenderableType]] = [
        ("id", str(task["id"])),
        ("name", Text(task["name"])),
        ("status", r.status(task["status"])),
        ("description", Text(task.get("description") or "-")),
        ("executor", task["executor"]),
        ("task type", task["task_type"]),
        ("command", Text(task["command"])),
        ("arguments", Text(r.plain(task.get("arguments")))),
        ("schedule", task.get("schedule") or "- (runs when triggered or released)"),
        ("time zone", task["timezone"]),
        ("next run", r.when(task.get("next_run_at"), now)),
        ("last run", r.when(task.get("last_run_at"), now)),
        ("priority", task["priority"]),
        ("retries", f"{task['retry_count']} (delay {r.duration(task['retry_delay_seconds'])})"),
        ("timeout", r.duration(timeout) if timeout else "- (server default)"),
        ("concurrency", task["concurrency_policy"]),
        ("misfire", task["misfire_policy"]),
        ("depends on", Text(_dependencies(task.get("dependencies") or [], names or {}))),
        ("tags", r.plain(task.get("tags"))),
        ("metadata", Text(r.plain(task.get("metadata")))),
        ("environment", Text(" ".join(sorted(task.get("environment") or {})) or "-")),
        ("alerts", Text(_notify(task.get("notify")))),
        ("run as", Text(task.get("run_as") or "- (the worker's run_as)")),
        ("working dir", Text(task.get("working_dir") or "- (the run user's home)")),
        ("limits", Text(_limits(task))),
        ("created", r.when(task["created_at"], now)),
        ("updated", r.when(task["updated_at"], now)),
    ]
    return r.fields(rows)


def _notify(rules: Json | None) -> str:
    if not rules:
        return "- (notify.default)"
    return "; ".join(
        f"{key} {', '.join(value) if isinstance(value, list) else value}"
        for key, value in rules.items()
    )


def _limits(task: Json) -> str:
    parts = []
    if task.get("memory_max_mb") is not None:
        parts.append(f"memory {task['memory_max_mb']} MB")
    if task.get("cpu_max") is not None:
        parts.append(f"cpu {task['cpu_max']:g} cores")
    if task.get("pids_max") is not None:
        parts.append(f"{task['pids_max']} processes")
    return ", ".join(parts) or "-"


UTC_NAMES = frozenset(
    {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"}
    | {"GMT", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "Etc/Greenwich", "Greenwich"}
)


def fire_times(
    data: Json, task_zone: tuple[tzinfo, str] | None = None, local: tuple[tzinfo, str] | None = None
) -> Table:
    """Fire times in the task's zone and the operator's local zone (when given), and UTC.

    A zone that is UTC under another name, or the same zone twice, gets no column.
    """
    zones: list[tuple[tzinfo, str]] = []
    headers: list[str] = []
    for label, zone in (("TASK ZONE", task_zone), ("LOCAL", local)):
        if zone is None or zone[1] in UTC_NAMES or zone[1] in (z[1] for z in zones):
            continue
        zones.append(zone)
        headers.append(f"{label} ({zone[1]})")
    table = r.columns("#", *headers, "UTC", "IN")
    now = r.now()
    for index, moment in enumerate(data["times"], start=1):
        instant = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        shown = [zoned_text(instant.astimezone(zone)) for zone, _ in zones]
        table.add_row(str(index), *shown, r.timestamp(moment), r.relative(moment, now))
    if not data["times"]:
        table.add_row("-", *([""] * len(zones)), "no fire times (no schedule)", "")
    return table


def zoned_text(moment: datetime) -> str:
    """``2025-03-30 03:00:00 +02:00 CEST``: wall time, UTC offset, zone abbreviation."""
    offset = moment.isoformat()[19:]  # "+02:00" (seconds too for historic LMT offsets)
    return f"{moment:%Y-%m-%d %H:%M:%S} {offset} {moment.tzname()}"


def _dependencies(ids: list[int], names: dict[int, str]) -> str:
    if not ids:
        return "-"
    return ", ".join(f"{names[i]} ({i})" if i in names else str(i) for i in ids)


# -- runs -----------------------------------------------------------------------------


def run_list(page: Json, names: dict[int, str] | None = None) -> list[RenderableType]:
    table = r.columns(
        "ID", "TASK", "STATUS", "TRIGGER", "TRY", "WORKER", "CREATED", "DURATION", "EXIT"
    )
    names = names or {}
    now = r.now()
    for run in page["items"]:
        table.add_row(
            str(run["id"]),
            Text(names.get(run["task_id"], str(run["task_id"]))),
            r.status(run["status"]),
            run["trigger"],
            str(run["retry_count"]),
            r.plain(run.get("worker_id")),
            r.relative(run["created_at"], now),
            r.duration(run.get("execution_time")),
            r.plain(run.get("exit_code")),
        )
    return [table, r.footer(page, "runs")]


def run_detail(run: Json, task_name: str | None = None) -> Table:
    now = r.now()
    task = f"{run['task_id']} ({task_name})" if task_name else str(run["task_id"])
    rows: list[tuple[str, RenderableType]] = [
        ("id", str(run["id"])),
        ("task", Text(task)),
        ("status", r.status(run["status"])),
        ("trigger", run["trigger"]),
        ("attempt", str(run["retry_count"])),
        ("worker", r.plain(run.get("worker_id"))),
        ("scheduled for", r.when(run.get("scheduled_for"), now)),
        ("created", r.when(run["created_at"], now)),
        ("started", r.when(run.get("started_at"), now)),
        ("completed", r.when(run.get("completed_at"), now)),
        ("duration", r.duration(run.get("execution_time"))),
        ("exit code", r.plain(run.get("exit_code"))),
        ("arguments", Text(r.plain(run.get("arguments")) if run.get("arguments") else "(task's)")),
        ("output", f"{run.get('output_bytes', 0)} bytes"),
        ("cpu", r.number(run.get("cpu_seconds"), " s", 2)),
        ("max memory", r.number(run.get("max_rss_mb"), " MB", 1)),
    ]
    if run.get("cancel_requested") and run["status"] == "running":
        rows.append(("cancel", "requested"))
    if run.get("parent_run_id"):
        rows.append(("retry of", str(run["parent_run_id"])))
    if run.get("error_message"):
        rows.append(("error", Text(run["error_message"], style="red")))
    if run.get("result"):
        rows.append(("result", Text(run["result"])))
    return r.fields(rows)


def run_summary(run: Json) -> str:
    """One line for the end of `task trigger --wait`: ``run 12 completed (exit 0) in 0.42s``."""
    text = f"run {run['id']} {run['status']}"
    if run.get("exit_code") is not None:
        text += f" (exit {run['exit_code']})"
    if run.get("execution_time") is not None:
        text += f" in {r.duration(run['execution_time'])}"
    if run.get("error_message") and run.get("exit_code") is None:
        text += f": {run['error_message']}"
    return text


# -- workers --------------------------------------------------------------------------


def worker_list(page: Json) -> list[RenderableType]:
    table = r.columns(
        "ID", "HOST", "STATUS", "RUNS", "TASK TYPES", "LOAD", "MEM", "CPU", "PORT", "SEEN"
    )
    now = r.now()
    for worker in page["items"]:
        table.add_row(
            Text(worker["id"]),
            Text(worker["hostname"]),
            r.status(worker["status"]),
            f"{worker['current_task_count']}/{worker['max_concurrent_tasks']}",
            r.plain(worker.get("task_types")),
            r.number(worker.get("load_average"), digits=2),
            r.number(worker.get("memory_usage"), "MB", 0),
            r.number(worker.get("cpu_usage"), "%"),
            r.plain(worker.get("port")),
            r.relative(worker.get("last_heartbeat"), now),
        )
    return [table, r.footer(page, "workers")]


def worker_detail(worker: Json) -> Table:
    now = r.now()
    address = worker.get("ip_address") or "-"
    port = worker.get("port")
    if port:
        address += f":{port}"
    rows: list[tuple[str, RenderableType]] = [
        ("id", Text(worker["id"])),
        ("host", Text(worker["hostname"])),
        ("address", address),
        ("port", f"{port} (metrics)" if port else "- (no metrics listener)"),
        ("status", r.status(worker["status"])),
        ("runs", f"{worker['current_task_count']} of {worker['max_concurrent_tasks']}"),
        ("task types", r.plain(worker.get("task_types"))),
        ("executors", r.plain(worker.get("executor_types"))),
        ("load", r.number(worker.get("load_average"), digits=2)),
        ("memory", r.number(worker.get("memory_usage"), " MB", 0)),
        ("cpu", r.number(worker.get("cpu_usage"), "%")),
        ("last heartbeat", r.when(worker.get("last_heartbeat"), now)),
        ("registered", r.when(worker["registered_at"], now)),
        ("pid", r.plain(worker.get("pid"))),
        ("version", r.plain(worker.get("version"))),
        ("isolation", r.plain(worker.get("isolation"))),
    ]
    return r.fields(rows)


# -- system ---------------------------------------------------------------------------


def health(data: Json) -> Table:
    return r.fields(
        [
            ("status", r.status(data.get("status"))),
            ("database", r.status(data.get("database"))),
            ("broker", r.status(data.get("broker"))),
            ("backlog", _backlog(data.get("pending_runs"), data.get("oldest_pending_seconds"))),
            ("version", r.plain(data.get("version"))),
        ]
    )


def _backlog(pending: int | None, oldest: float | None) -> str:
    if pending is None:
        return "-"
    if not pending or oldest is None:
        return f"{pending} pending"
    return f"{pending} pending, oldest {r.duration(oldest)}"


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{name} {n}" for name, n in counts.items() if n]
    return ", ".join(shown) or "none"


def _window(counts: Json) -> str:
    rate = counts.get("success_rate")
    success = "-" if rate is None else f"{rate * 100:.1f}%"
    return (
        f"{counts['total']} runs ({_counts(counts['by_status'])}); success {success}; "
        f"{counts['throughput_per_minute']:g}/min"
    )


def stats(data: Json) -> Table:
    return r.fields(
        [
            ("version", data["version"]),
            ("uptime", r.duration(data["uptime_seconds"]) if data["uptime_seconds"] else "-"),
            ("tasks", _counts(data["tasks"])),
            ("workers", _counts(data["workers"])),
            ("queue depth", _backlog(data["queue_depth"], data.get("oldest_pending_seconds"))),
            ("last hour", _window(data["runs_last_hour"])),
            ("last day", _window(data["runs_last_day"])),
        ]
    )


def log_rows(entries: list[Json]) -> Table:
    table = r.columns("TIME", "LEVEL", "COMPONENT", "MESSAGE")
    table.columns[-1].no_wrap = False
    table.columns[-1].max_width = None
    for entry in entries:
        table.add_row(
            r.timestamp(entry["time"]),
            r.level(entry["level"]),
            entry["component"],
            Text(entry["message"]),
        )
    return table


def log_list(page: Json) -> list[RenderableType]:
    return [log_rows(page["items"]), r.footer(page, "events")]


def audit_list(page: Json) -> list[RenderableType]:
    table = r.columns("TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME")
    for entry in page["items"]:
        table.add_row(
            r.timestamp(entry["time"]),
            Text(entry["actor"]),
            entry["action"],
            Text(entry["target"]),
            Text(entry["outcome"], style="green" if entry["outcome"] == "ok" else "red"),
        )
    return [table, r.footer(page, "entries")]


# -- credentials ----------------------------------------------------------------------


def apikey_list(page: Json) -> list[RenderableType]:
    table = r.columns("ID", "NAME", "STATE", "PREFIX", "SCOPES", "CREATED", "EXPIRES", "LAST USED")
    table.columns[4].no_wrap = False
    now = r.now()
    for key in page["items"]:
        expires = r.parse_time(key.get("expires_at"))
        state = "active"
        if key.get("revoked_at"):
            state = "revoked"
        elif expires is not None and expires <= now:
            state = "expired"
        table.add_row(
            str(key["id"]),
            Text(key["name"]),
            Text(state, style={"active": "green"}.get(state, "red")),
            key["prefix"] + "…",
            r.plain(key.get("scopes")),
            r.timestamp(key["created_at"]),
            r.relative(key.get("expires_at"), now) if key.get("expires_at") else "never",
            r.relative(key.get("last_used_at"), now),
        )
    return [table, r.footer(page, "keys")]


def apikey_created(key: Json) -> list[RenderableType]:
    return [
        r.fields(
            [
                ("id", str(key["id"])),
                ("name", Text(key["name"])),
                ("scopes", r.plain(key.get("scopes"))),
                (
                    "expires",
                    r.timestamp(key.get("expires_at")) if key.get("expires_at") else "never",
                ),
                ("key", Text(key["key"], style="bold")),
            ]
        ),
        Text("Store the key now: it is not shown again.", style="yellow"),
    ]


def token(data: Json) -> list[RenderableType]:
    return [
        r.fields(
            [
                ("expires", r.when(data["expires_at"])),
                ("scopes", r.plain(data.get("scopes"))),
                ("token", Text(data["token"], style="bold")),
            ]
        )
    ]


def whoami(data: Json) -> Table:
    return r.fields(
        [
            ("actor", Text(data["actor"])),
            ("kind", data["kind"]),
            ("key", Text(f"{data['key_id']} ({data['key_name']})")),
            ("scopes", r.plain(data.get("scopes"))),
            ("expires", r.when(data.get("expires_at")) if data.get("expires_at") else "never"),
        ]
    )


def channel_list(channels: list[Json]) -> Table:
    table = r.columns("NAME", "TYPE", "TARGET", "SECRETS")
    for channel in channels:
        secrets = ", ".join(
            f"{name} {'set' if present else 'NOT SET'}"
            for name, present in (channel.get("secrets") or {}).items()
        )
        table.add_row(
            Text(channel["name"]), channel["type"], Text(channel["target"]), Text(secrets or "-")
        )
    return table


def delivery_list(page: Json) -> list[RenderableType]:
    table = r.columns("ID", "CHANNEL", "STATE", "EVENT", "TASK", "RUN", "TRIES", "CREATED", "ERROR")
    now = r.now()
    for item in page["items"]:
        event = item["event"]
        if item.get("digest_count"):
            event += f" ({item['digest_count']})"
        table.add_row(
            str(item["id"]),
            Text(item["channel"]),
            r.status(item["state"]),
            event,
            Text(item.get("task_name") or "-"),
            str(item["run_id"]) if item.get("run_id") else "-",
            str(item["attempts"]),
            r.relative(item.get("created_at"), now),
            Text((item.get("last_error") or "")[:80] or "-"),
        )
    return [table, r.footer(page, "deliveries")]
