"""Task use cases: create, get, list, update, delete.

The HTTP API and `schedctl --db` both call these functions, so a rule lives here once.
Each function works inside the caller's session (one transaction) and raises the
errors of ``schedd.errors``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select

from schedd import cron
from schedd.errors import Conflict, Forbidden, InvalidInput, NotFound
from schedd.executors.target import arguments_problem, target_problem
from schedd.models import Executor, Task, TaskDependency, TaskStatus
from schedd.scheduler.notify import notify_tasks_changed
from schedd.schemas import Page, TaskCreate, TaskCreated, TaskRead, TaskUpdate
from schedd.services import audit
from schedd.services.paging import DEFAULT_PAGE_SIZE, fetch_page
from schedd.services.taskchecks import check_python_command, create_warnings
from schedd.types import utcnow


def next_fire(task: Task, after: datetime) -> datetime | None:
    """The task's next scheduled time after ``after``, or None (paused, no schedule)."""
    if task.schedule is None or task.status != TaskStatus.active:
        return None
    return cron.parse(task.schedule, task.timezone).next_after(after)


def _check_schedule(schedule: str | None, timezone: str) -> None:
    cron.zone(timezone)
    if schedule is not None:
        cron.parse(schedule, timezone)


# What a run executes and as whom. Changing one of these on a task that runs without a
# trigger (schedule or dependencies) starts code nobody triggered: task.execute's job.
RUN_FIELDS = frozenset(
    {"command", "arguments", "executor", "run_as", "environment", "working_dir", "metadata"}
)
EXECUTE = "task.execute"


def _require_execute(scopes: Collection[str] | None, why: str) -> None:
    """Refuse a change that makes code run on its own unless the caller may execute.

    ``scopes`` None is direct database access (``schedctl --db``): whoever holds the
    database URL is already an administrator, so nothing is checked.
    """
    if scopes is not None and EXECUTE not in scopes:
        raise Forbidden(f"this operation needs the scope {EXECUTE} as well: {why}")


def _runs_by_itself(schedule: str | None, dependencies: Collection[int]) -> bool:
    return schedule is not None or bool(dependencies)


def _check_command(executor: str, command: str) -> None:
    """An http task's URL must not carry credentials (``user:password@``): they would be
    shown to every task.read holder and sent as Basic auth. Headers are the place."""
    if executor != "http":
        return
    authority = urlsplit(command.strip()).netloc
    if "@" in authority:
        raise InvalidInput(
            "command: the URL must not carry user information (user:password@); "
            "send credentials in metadata.http.headers",
            field="command",
        )


def check_function_call(
    executor: str, command: str | None, arguments: Iterable[str] | None
) -> None:
    """A function task's command must name a function and its arguments be JSON;
    InvalidInput names the field. Other executors are not concerned."""
    if executor != Executor.function:
        return
    problem = target_problem(command or "")
    if problem is not None:
        raise InvalidInput(f"command: {problem}", field="command")
    problem = arguments_problem(list(arguments or []))
    if problem is not None:
        raise InvalidInput(problem, field="arguments")


def resolve(session: Session, ref: str | int, *, lock: bool = False) -> Task:
    """A task by id (an int or a string of digits) or by name; NotFound otherwise."""
    query = select(Task)
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        query = query.where(Task.id == int(ref))
    else:
        query = query.where(Task.name == ref)
    if lock:
        # Read again under the lock: the session may hold the row from before it.
        query = query.with_for_update().execution_options(populate_existing=True)
    task = session.exec(query).first()
    if task is None:
        raise NotFound(f"task {ref!r} not found")
    return task


def dependencies_of(session: Session, task_ids: Iterable[int]) -> dict[int, list[int]]:
    ids = list(task_ids)
    deps: dict[int, list[int]] = {task_id: [] for task_id in ids}
    if not ids:
        return deps
    rows = session.exec(select(TaskDependency).where(col(TaskDependency.task_id).in_(ids))).all()
    for row in rows:
        deps[row.task_id].append(row.depends_on_id)
    for values in deps.values():
        values.sort()
    return deps


def read(session: Session, task: Task) -> TaskRead:
    assert task.id is not None
    return TaskRead.of(task, dependencies_of(session, [task.id])[task.id])


_tasks = Task.__table__  # type: ignore[attr-defined]
_task_deps = TaskDependency.__table__  # type: ignore[attr-defined]
# What GET /api/tasks/{ref} shows, in one Core query on the primary key (or the unique
# name): the task's columns (its column "metadata" is the field "metadata") and one row
# per dependency, by a left join. No ORM objects on this hot read.
_SHOWN = [column for column in _tasks.c if column.name in TaskRead.model_fields]
_WITH_DEPS = (
    sa.select(*_SHOWN, _task_deps.c.depends_on_id)
    .select_from(_tasks.outerjoin(_task_deps, _task_deps.c.task_id == _tasks.c.id))
    .order_by(_task_deps.c.depends_on_id)
)
_BY_ID = _WITH_DEPS.where(_tasks.c.id == sa.bindparam("ref"))
_BY_NAME = _WITH_DEPS.where(_tasks.c.name == sa.bindparam("ref"))


def get_task(session: Session, ref: str | int) -> TaskRead:
    """A task by id or name (as :func:`resolve` finds it); NotFound otherwise."""
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        rows = session.execute(_BY_ID, {"ref": int(ref)}).all()
    else:
        rows = session.execute(_BY_NAME, {"ref": ref}).all()
    if not rows:
        raise NotFound(f"task {ref!r} not found")
    values = dict(rows[0]._mapping)
    del values["depends_on_id"]
    values["dependencies"] = [r.depends_on_id for r in rows if r.depends_on_id is not None]
    return TaskRead.model_validate(values)


def list_tasks(
    session: Session,
    *,
    status: str | None = None,
    tag: str | None = None,
    executor: str | None = None,
    name: str | None = None,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[TaskRead]:
    """Tasks ordered by id; ``name`` matches a case-insensitive substring."""
    query = select(Task)
    if status is not None:
        query = query.where(Task.status == status)
    if executor is not None:
        query = query.where(Task.executor == executor)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(Task.name).ilike(f"%{escaped}%", escape="\\"))
    if tag is not None:
        query = query.where(_has_tag(session, tag))
    tasks, total = fetch_page(session, query, col(Task.id), page, size)
    deps = dependencies_of(session, [t.id for t in tasks if t.id is not None])
    items = [TaskRead.of(t, deps[t.id]) for t in tasks if t.id is not None]
    return Page[TaskRead](items=items, total=total, page=page, size=size)


def _has_tag(session: Session, tag: str) -> sa.ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return sa.literal_column("tasks.tags").op("@>")(sa.func.jsonb_build_array(tag))
    each = sa.func.json_each(sa.literal_column("tasks.tags")).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))


def _check_dependencies(session: Session, task_id: int | None, deps: list[int]) -> None:
    """Every dependency exists, and adding them to ``task_id`` creates no cycle."""
    if not deps:
        return
    if task_id is not None and task_id in deps:
        raise InvalidInput("dependencies: a task cannot depend on itself", field="dependencies")
    found = set(session.exec(select(Task.id).where(col(Task.id).in_(deps))).all())
    missing = [d for d in deps if d not in found]
    if missing:
        raise InvalidInput(
            f"dependencies: unknown task id(s) {', '.join(map(str, missing))}",
            field="dependencies",
        )
    if task_id is None:
        return  # a new task has no dependents yet, so it cannot close a cycle
    edges: dict[int, list[int]] = {}
    for row in session.exec(select(TaskDependency)).all():
        if row.task_id != task_id:
            edges.setdefault(row.task_id, []).append(row.depends_on_id)
    edges[task_id] = list(deps)
    cycle = _find_cycle(edges, task_id)
    if cycle:
        names = dict(session.exec(select(Task.id, Task.name).where(col(Task.id).in_(cycle))).all())
        path = " -> ".join(names.get(i, str(i)) for i in [*cycle, cycle[0]])
        raise InvalidInput(f"dependencies: dependency cycle {path}", field="dependencies")


def _find_cycle(edges: dict[int, list[int]], start: int) -> list[int] | None:
    """A path start -> ... -> start through ``edges``, if there is one."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, []):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def _set_dependencies(session: Session, task_id: int, deps: list[int]) -> None:
    session.execute(sa.delete(TaskDependency).where(col(TaskDependency.task_id) == task_id))
    for dep in deps:
        session.add(TaskDependency(task_id=task_id, depends_on_id=dep))


def _name_taken(session: Session, name: str, exclude_id: int | None = None) -> bool:
    query = select(Task.id).where(Task.name == name)
    if exclude_id is not None:
        query = query.where(Task.id != exclude_id)
    return session.exec(query).first() is not None


def create_task(
    session: Session,
    data: TaskCreate,
    *,
    default_timezone: str = "UTC",
    actor: str | None = None,
    now: datetime | None = None,
    scopes: Collection[str] | None = None,
    worker_directory: str | None = None,
    channels: Collection[str] | None = None,
) -> TaskCreated:
    """Validate and store a new task; its first fire time is computed from ``now``.

    A task with a schedule or dependencies runs without a trigger, so creating one
    needs ``task.execute`` in ``scopes`` too (None: direct database access, no check).
    The answer carries warnings about what may stop it from running (a python script
    not found in ``working_dir``, else in ``worker_directory``, the configured
    ``worker.working_directory``).
    """
    now = now or utcnow()
    if _runs_by_itself(data.schedule, data.dependencies) and data.status == TaskStatus.active:
        _require_execute(scopes, "a task with a schedule or dependencies runs by itself")
    timezone = data.timezone or default_timezone
    _check_schedule(data.schedule, timezone)
    _check_command(data.executor.value, data.command)
    check_function_call(data.executor, data.command, data.arguments)
    check_python_command(data.executor, data.command)
    _check_channels(data.notify, channels)
    if _name_taken(session, data.name):
        raise Conflict(f"a task named {data.name!r} already exists", field="name")
    _check_dependencies(session, None, data.dependencies)
    values: dict[str, Any] = data.model_dump(exclude={"dependencies", "metadata", "timezone"})
    task = Task(
        **values,
        timezone=timezone,
        metadata_=data.metadata,
        created_at=now,
        updated_at=now,
    )
    task.task_type = data.task_type or data.executor.value
    task.next_run_at = next_fire(task, now)
    session.add(task)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict(f"a task named {data.name!r} already exists", field="name") from exc
    assert task.id is not None
    _set_dependencies(session, task.id, data.dependencies)
    audit.record(session, actor, "task.create", f"task:{task.id}", detail={"name": task.name})
    notify_tasks_changed(session)
    session.flush()
    warnings = create_warnings(data.executor, data.command, data.working_dir, worker_directory)
    return TaskCreated(**read(session, task).model_dump(), warnings=warnings)


def update_task(
    session: Session,
    ref: str | int,
    data: TaskUpdate,
    *,
    actor: str | None = None,
    now: datetime | None = None,
    scopes: Collection[str] | None = None,
    channels: Collection[str] | None = None,
) -> TaskRead:
    """Change the given fields; schedule, time zone or status changes move next_run_at.

    Adding a schedule or dependencies, or changing what a task that has them runs
    (:data:`RUN_FIELDS`, or activating it), needs ``task.execute`` in ``scopes`` too.
    """
    now = now or utcnow()
    task = resolve(session, ref, lock=True)
    assert task.id is not None
    changes = data.model_dump(exclude_unset=True)
    _check_update_authority(session, task, changes, scopes)
    for required in (
        "name",
        "executor",
        "command",
        "timezone",
        "priority",
        "status",
        "environment",
        "notify",
    ):
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required}: may not be null", field=required)
    _check_channels(changes.get("notify"), channels)
    if "name" in changes and _name_taken(session, changes["name"], task.id):
        raise Conflict(f"a task named {changes['name']!r} already exists", field="name")
    schedule = changes.get("schedule", task.schedule)
    timezone = changes.get("timezone") or task.timezone
    _check_schedule(schedule, timezone)
    if {"executor", "command"} & changes.keys():
        executor = changes.get("executor") or task.executor
        _check_command(getattr(executor, "value", executor), changes.get("command") or task.command)
    check_function_call(
        changes.get("executor") or task.executor,
        changes.get("command") or task.command,
        changes["arguments"] if changes.get("arguments") is not None else task.arguments,
    )
    if {"executor", "command"} & changes.keys():
        check_python_command(
            changes.get("executor") or task.executor, changes.get("command") or task.command
        )
    deps = changes.pop("dependencies", None)
    if deps is not None:
        _check_dependencies(session, task.id, deps)
        _set_dependencies(session, task.id, deps)
    if "metadata" in changes:
        task.metadata_ = changes.pop("metadata") or {}
    for key, value in changes.items():
        setattr(task, key, value.value if hasattr(value, "value") else value)
    if (
        "executor" in changes
        and "task_type" not in changes
        and task.task_type in {executor.value for executor in Executor}
    ):
        task.task_type = task.executor
    if {"schedule", "timezone", "status"} & changes.keys():
        task.next_run_at = next_fire(task, now)
    task.updated_at = now
    session.add(task)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"task {ref!r} could not be updated: {exc.orig}") from exc
    fields = sorted(changes.keys() | ({"dependencies"} if deps is not None else set()))
    audit.record(session, actor, "task.update", f"task:{task.id}", detail={"fields": fields})
    if {"schedule", "timezone", "status"} & changes.keys():
        notify_tasks_changed(session)
    return read(session, task)


def _check_channels(notify: dict[str, Any] | None, channels: Collection[str] | None) -> None:
    """Every channel the rules name is configured (None: not checked, e.g. no config)."""
    if not notify or channels is None:
        return
    for event, names in notify.items():
        for name in names if isinstance(names, list) else []:
            if name not in channels:
                known = ", ".join(sorted(channels)) or "none are configured"
                raise InvalidInput(
                    f"notify.{event}: no channel named {name!r} ([notify.channels]: {known})",
                    field="notify",
                )


def _check_update_authority(
    session: Session, task: Task, changes: dict[str, Any], scopes: Collection[str] | None
) -> None:
    if scopes is None or EXECUTE in scopes:
        return
    assert task.id is not None
    schedule = changes.get("schedule", task.schedule)
    deps = changes.get("dependencies")
    if deps is None:
        deps = dependencies_of(session, [task.id])[task.id]
    if not _runs_by_itself(schedule, deps):
        return
    if changes.get("schedule") is not None or changes.get("dependencies"):
        _require_execute(scopes, "adding a schedule or dependencies makes the task run by itself")
    touched = sorted(f for f in RUN_FIELDS & changes.keys() if _differs(task, f, changes[f]))
    if touched:
        _require_execute(scopes, f"changing {', '.join(touched)} of a task that runs by itself")
    status = changes.get("status")
    if status is not None and TaskStatus(status) == TaskStatus.active != task.status:
        _require_execute(scopes, "activating a task that runs by itself")


def _differs(task: Task, field: str, value: Any) -> bool:
    """Whether an update really changes ``field`` (``apply`` resends unchanged fields)."""
    if field == "metadata":  # only metadata.http says what a run does (the http executor)
        return bool((task.metadata_ or {}).get("http") != (value or {}).get("http"))
    current: Any = getattr(task, field, None)
    return bool(_plain(current) != _plain(value))


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def delete_task(
    session: Session, ref: str | int, *, force: bool = False, actor: str | None = None
) -> None:
    """Delete a task and its runs; refused while other tasks depend on it, unless forced."""
    task = resolve(session, ref, lock=True)
    assert task.id is not None
    dependents = session.exec(
        select(Task.name)
        .join(TaskDependency, col(TaskDependency.task_id) == Task.id)
        .where(TaskDependency.depends_on_id == task.id)
        .order_by(Task.name)
    ).all()
    if dependents and not force:
        raise Conflict(
            f"task {task.name!r} is a dependency of {', '.join(map(repr, dependents))}; "
            "remove the dependency or delete with force"
        )
    session.execute(sa.delete(TaskDependency).where(col(TaskDependency.depends_on_id) == task.id))
    session.delete(task)
    audit.record(
        session,
        actor,
        "task.delete",
        f"task:{task.id}",
        detail={"name": task.name, "forced": bool(dependents)},
    )
    session.flush()
