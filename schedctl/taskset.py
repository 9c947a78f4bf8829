"""Declarative task sets: a TOML file of tasks, planned against the server, then applied.

The format (``schedctl apply -f tasks.toml``, written by ``schedctl export``)::

    [tasks.backup]                      # the table key is the task name
    executor = "shell"                  # every key is a task field of the API
    command = "pg_dump app > /var/backups/app.sql"
    schedule = "0 30 2 * * *"
    timezone = "Europe/Berlin"
    retry_count = 2
    tags = ["db", "nightly"]

    [tasks.report]
    executor = "python"
    command = "/opt/reports/daily.py"
    dependencies = ["backup"]           # upstream tasks by name

The file is the whole truth for the tasks it names: a field left out takes the API's
default (so deleting a line resets the field), except ``timezone`` and ``status``,
which are managed only when the file sets them (a task an operator paused stays paused
unless the file says ``status = "active"``). Tasks on the server that the file does not
name are left alone, or deleted with ``--prune`` (only those with ``--tag`` when given).
A task is matched by name, so a rename is a delete plus a create.

The whole file is checked before anything changes: TOML syntax (file:line:column),
unknown fields, types, cron expressions and time zones, dependency names and cycles.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from schedctl.client import Client, Json
from schedd import cron
from schedd.errors import InvalidInput, SchedError
from schedd.schemas import TaskCreate, validated

# Managed only when the file sets them (see the module doc).
OPTIONAL_FIELDS = ("timezone", "status")
COMPARED = [f for f in TaskCreate.model_fields if f not in ("name", "dependencies")]
_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")


@dataclass
class Desired:
    name: str
    body: Json  # the API body, every field filled in; dependencies are names
    explicit: set[str]  # the fields the file sets


@dataclass
class Plan:
    source: str
    create: list[Desired] = field(default_factory=list)
    change: list[tuple[Desired, list[str]]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    delete: list[Json] = field(default_factory=list)
    not_in_file: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.change or self.delete)

    def summary(self, *, applied: bool) -> Json:
        return {
            "file": self.source,
            "applied": applied,
            "created": [d.name for d in self.create],
            "changed": [{"name": d.name, "fields": fields} for d, fields in self.change],
            "unchanged": self.unchanged,
            "deleted": [t["name"] for t in self.delete],
            "not_in_file": self.not_in_file,
        }


# -- reading ---------------------------------------------------------------------------


def _line_of(text: str, name: str) -> int | None:
    header = re.compile(rf'^[ \t]*\[\s*tasks\s*\.\s*(["\']?){re.escape(name)}\1\s*\]', re.MULTILINE)
    match = header.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def load(path: Path) -> list[Desired]:
    """The tasks of a task file; InvalidInput naming file, line and field otherwise."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if match := _AT.match(message):
            message, line, column = match.groups()
            raise InvalidInput(f"{source}:{line}:{column}: invalid TOML: {message}") from None
        raise InvalidInput(f"{source}: invalid TOML: {message}") from None
    extra = [key for key in document if key != "tasks"]
    if extra or not isinstance(document.get("tasks"), dict):
        what = f"unknown top-level key {extra[0]!r}" if extra else "no [tasks.<name>] tables"
        raise InvalidInput(f"{source}: {what} (expected only [tasks.<name>] tables)")
    desired = []
    for name, entry in document["tasks"].items():
        line = _line_of(text, name)
        where = f"{source}:{line}" if line else source
        try:
            desired.append(_entry(name, entry))
        except SchedError as exc:
            # No field: the message names it after the file and line it starts with.
            raise InvalidInput(f"{where}: task {name!r}: {exc.message}") from None
    _check_cycles(source, desired)
    return desired


def _entry(name: str, entry: Any) -> Desired:
    if not isinstance(entry, dict):
        raise InvalidInput(f"expected a table [tasks.{name}]")
    if "name" in entry:
        raise InvalidInput("name: the table key is the task's name; remove the name key")
    deps = entry.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise InvalidInput("dependencies: expected a list of task names", field="dependencies")
    data = validated(TaskCreate, {**entry, "name": name, "dependencies": []})
    try:
        zone = cron.zone(data.timezone or "UTC")
        if data.schedule is not None:
            cron.parse(data.schedule, zone.key)
    except cron.CronError as exc:
        raise InvalidInput(f"{exc.field or 'schedule'}: {exc.message}", field=exc.field) from None
    body = data.model_dump(mode="json")
    body["task_type"] = body["task_type"] or body["executor"]
    body["dependencies"] = sorted(set(deps))
    return Desired(name, body, set(entry))


def _check_cycles(source: str, desired: list[Desired]) -> None:
    graph = {d.name: d.body["dependencies"] for d in desired}
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for upstream in graph.get(node, []):
                if upstream == start:
                    cycle = " -> ".join([*path, start])
                    raise InvalidInput(f"{source}: dependency cycle {cycle}")
                if upstream not in seen:
                    seen.add(upstream)
                    stack.append((upstream, [*path, upstream]))


# -- planning --------------------------------------------------------------------------


def differences(current: Json, wanted: Desired, names: dict[int, str]) -> list[str]:
    """The fields of ``current`` (a task from the API) that ``wanted`` changes."""
    changed = []
    for key in COMPARED:
        if key in OPTIONAL_FIELDS and key not in wanted.explicit:
            continue
        if current.get(key) != wanted.body[key]:
            changed.append(key)
    deps = sorted(names.get(i, str(i)) for i in current.get("dependencies", []))
    if deps != wanted.body["dependencies"]:
        changed.append("dependencies")
    return changed


def plan(
    client: Client, source: str, desired: list[Desired], *, prune: bool, tag: str | None
) -> Plan:
    """What applying ``desired`` would do to the server's tasks."""
    existing = {task["name"]: task for task in client.all_tasks()}
    names = {task["id"]: task["name"] for task in existing.values()}
    wanted = {d.name for d in desired}
    result = Plan(source)
    for item in desired:
        current = existing.get(item.name)
        if current is None:
            result.create.append(item)
        elif changed := differences(current, item, names):
            result.change.append((item, changed))
        else:
            result.unchanged.append(item.name)
    others = [t for n, t in existing.items() if n not in wanted]
    if prune:
        result.delete = [t for t in others if tag is None or tag in t.get("tags", [])]
    result.not_in_file = [t["name"] for t in others if t not in result.delete]
    doomed = {t["name"] for t in result.delete}
    for item in desired:
        for upstream in item.body["dependencies"]:
            if upstream in doomed or (upstream not in wanted and upstream not in existing):
                why = (
                    "deleted by --prune"
                    if upstream in doomed
                    else "neither in the file nor on the server"
                )
                raise InvalidInput(
                    f"{source}: task {item.name!r} depends on {upstream!r}, which is {why}"
                )
    result.create = _upstream_first(result.create)
    return result


def _upstream_first(items: list[Desired]) -> list[Desired]:
    """Order new tasks so each comes after the new tasks it depends on."""
    pending = {d.name: d for d in items}
    ordered: list[Desired] = []
    while pending:
        ready = [d for d in pending.values() if not set(d.body["dependencies"]) & pending.keys()]
        for item in ready:
            ordered.append(pending.pop(item.name))
    return ordered


# -- applying --------------------------------------------------------------------------


def apply(
    client: Client,
    result: Plan,
    report: Callable[[str, str], None],
    warn: Callable[[str], None] = lambda _message: None,
) -> None:
    """Carry out ``result``: creations (upstream first), changes, then deletions.

    ``report(action, name)`` is called after each step, so a failure half-way (HTTP
    mode has no transaction across calls) leaves a record of what was done; ``warn``
    gets the server's warnings about a created task, prefixed with its name.
    """
    ids = {task["name"]: task["id"] for task in client.all_tasks()}

    def resolved(names: list[str]) -> list[int]:
        return sorted(ids[name] for name in names)

    for item in result.create:
        body = {
            k: v for k, v in item.body.items() if k in item.explicit or k not in OPTIONAL_FIELDS
        }
        created = client.create_task(
            {**body, "name": item.name, "dependencies": resolved(body["dependencies"])}
        )
        ids[item.name] = created["id"]
        report("created", item.name)
        for warning in created.get("warnings", []):
            warn(f"{item.name}: {warning}")
    for item, fields in result.change:
        body = {key: item.body[key] for key in fields}
        if "dependencies" in body:
            body["dependencies"] = resolved(body["dependencies"])
        client.update_task(str(ids[item.name]), body)
        report("changed", item.name)
    for task in _dependents_first(result.delete):
        client.delete_task(str(task["id"]))
        report("deleted", task["name"])


def _dependents_first(tasks: list[Json]) -> list[Json]:
    by_id = {t["id"]: t for t in tasks}
    ordered: list[Json] = []
    while by_id:
        needed = {dep for t in by_id.values() for dep in t.get("dependencies", [])}
        leaves = [t for i, t in by_id.items() if i not in needed]
        for task in leaves or list(by_id.values()):
            ordered.append(by_id.pop(task["id"]))
    return ordered


# -- exporting -------------------------------------------------------------------------


def export(tasks: list[Json], names: dict[int, str]) -> Json:
    """The task-file document for ``tasks``: only fields that differ from the defaults,
    plus executor, command and timezone, so a re-apply changes nothing."""
    defaults = TaskCreate.model_fields
    document: dict[str, Json] = {}
    for task in tasks:
        entry: Json = {"executor": task["executor"], "command": task["command"]}
        for key in COMPARED:
            value = task.get(key)
            if key in entry or value is None:
                continue
            default = defaults[key].get_default(call_default_factory=True)
            keep = key == "timezone" or (key == "task_type" and value != task["executor"])
            if keep or (key != "task_type" and value != default):
                entry[key] = value
        if task.get("dependencies"):
            entry["dependencies"] = sorted(names.get(i, str(i)) for i in task["dependencies"])
        document[task["name"]] = entry
    return {"tasks": document}


def to_toml(document: Json, header: str) -> str:
    return header + tomli_w.dumps(document)
