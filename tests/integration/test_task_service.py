"""The task service on SQLite and PostgreSQL: the code the API and `schedctl --db` share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from schedd.db import Database
from schedd.errors import Conflict, Forbidden, InvalidInput, NotFound
from schedd.models import AuditEntry, Task, TaskRun
from schedd.schemas import TaskCreate, TaskUpdate, validated
from schedd.services import tasks

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def spec(**overrides: Any) -> TaskCreate:
    data: dict[str, Any] = {"name": "backup", "executor": "shell", "command": "echo hi"}
    data.update(overrides)
    return validated(TaskCreate, data)


def create(db: Database, **overrides: Any) -> int:
    with db.session() as s:
        return tasks.create_task(s, spec(**overrides), now=NOW).id


def test_create_fills_defaults_and_first_fire_time(db: Database) -> None:
    with db.session() as s:
        task = tasks.create_task(s, spec(schedule="0 */5 * * * *"), now=NOW, actor="alice")
    assert task.task_type == "shell"
    assert task.timezone == "UTC"
    assert task.status == "active"
    assert task.priority == "normal"
    assert task.next_run_at == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert task.created_at == NOW
    with db.session() as s:
        entry = s.exec(select(AuditEntry)).one()
    assert (entry.actor, entry.action, entry.target) == ("alice", "task.create", f"task:{task.id}")


def test_five_field_cron_fires_at_second_zero_in_the_task_time_zone(db: Database) -> None:
    with db.session() as s:
        task = tasks.create_task(s, spec(schedule="0 2 * * *", timezone="Europe/Berlin"), now=NOW)
    # 02:00 in Berlin on 2 March (CET, UTC+1) is 01:00 UTC.
    assert task.next_run_at == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def test_default_time_zone_comes_from_the_caller(db: Database) -> None:
    with db.session() as s:
        task = tasks.create_task(
            s, spec(schedule="0 0 9 * * *"), now=NOW, default_timezone="America/New_York"
        )
    assert task.timezone == "America/New_York"


def test_get_by_id_and_by_name(db: Database) -> None:
    task_id = create(db, name="数据处理任务")
    with db.session() as s:
        assert tasks.get_task(s, task_id).name == "数据处理任务"
        assert tasks.get_task(s, str(task_id)).name == "数据处理任务"
        assert tasks.get_task(s, "数据处理任务").id == task_id
        with pytest.raises(NotFound, match="'nope' not found"):
            tasks.get_task(s, "nope")


def test_get_shows_what_the_task_row_and_its_dependencies_hold(db: Database) -> None:
    """get_task reads columns with one Core query; it shows what the ORM read shows."""
    first = create(db, name="first")
    second = create(db, name="second")
    task_id = create(
        db,
        name="third",
        schedule="0 0 * * * *",
        arguments=["-v", "x"],
        tags=["nightly", "db"],
        metadata={"owner": "ops", "n": 2},
        dependencies=[second, first],
    )
    with db.session() as s:
        shown = tasks.get_task(s, task_id)
        assert shown == tasks.read(s, tasks.resolve(s, task_id))
        assert tasks.get_task(s, "third") == shown
        assert tasks.get_task(s, first) == tasks.read(s, tasks.resolve(s, first))
    assert shown.dependencies == sorted([first, second])
    assert shown.metadata == {"owner": "ops", "n": 2}
    assert shown.tags == ["nightly", "db"]
    assert shown.next_run_at is not None and shown.next_run_at.tzinfo is not None


def test_duplicate_name_is_a_conflict_and_stores_nothing(db: Database) -> None:
    create(db)
    with pytest.raises(Conflict, match="already exists"), db.session() as s:
        tasks.create_task(s, spec(), now=NOW)
    with db.session() as s:
        assert len(s.exec(select(Task)).all()) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"schedule": "0 61 * * * *"}, "schedule"),
        ({"schedule": "* * * * * * *"}, "schedule"),
        ({"schedule": "@reboot"}, "schedule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"dependencies": [999]}, "dependencies"),
    ],
)
def test_invalid_task_is_refused_naming_the_field(
    db: Database, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err, db.session() as s:
        tasks.create_task(s, spec(**overrides), now=NOW)
    assert err.value.field == field
    with db.session() as s:
        assert s.exec(select(Task)).all() == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "executor": "perl", "command": "x"}, "executor"),
        ({"name": "x", "executor": "shell", "command": "x", "retry_count": -1}, "retry_count"),
        ({"name": "x", "executor": "shell", "command": "x", "retry_count": 101}, "retry_count"),
        (
            {"name": "x", "executor": "shell", "command": "x", "timeout_seconds": 0},
            "timeout_seconds",
        ),
        ({"name": "x", "executor": "shell", "command": "x", "colour": "red"}, "colour"),
        ({"name": "123", "executor": "shell", "command": "x"}, "name"),
        ({"name": " x", "executor": "shell", "command": "x"}, "name"),
        ({"name": "x", "executor": "shell", "command": ""}, "command"),
        ({"name": "x", "executor": "shell", "command": "x", "priority": "urgent"}, "priority"),
    ],
)
def test_request_validation_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validated(TaskCreate, data)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_list_filters_and_pages(db: Database) -> None:
    create(db, name="a-daily", tags=["daily", "data"])
    create(db, name="b-hourly", tags=["hourly"], executor="python", command="x.py")
    create(db, name="c-daily", tags=["daily"], status="paused")
    with db.session() as s:
        assert [t.name for t in tasks.list_tasks(s, tag="daily").items] == ["a-daily", "c-daily"]
        assert [t.name for t in tasks.list_tasks(s, status="paused").items] == ["c-daily"]
        assert [t.name for t in tasks.list_tasks(s, executor="python").items] == ["b-hourly"]
        assert [t.name for t in tasks.list_tasks(s, name="DAILY").items] == ["a-daily", "c-daily"]
        page = tasks.list_tasks(s, page=2, size=2)
    assert (page.total, page.page, page.size, [t.name for t in page.items]) == (
        3,
        2,
        2,
        ["c-daily"],
    )


def test_name_filter_treats_like_wildcards_literally(db: Database) -> None:
    create(db, name="a_b")
    create(db, name="axb")
    with db.session() as s:
        assert [t.name for t in tasks.list_tasks(s, name="a_b").items] == ["a_b"]


def test_page_size_is_bounded(db: Database) -> None:
    with pytest.raises(InvalidInput, match="size"), db.session() as s:
        tasks.list_tasks(s, size=501)
    with pytest.raises(InvalidInput, match="page"), db.session() as s:
        tasks.list_tasks(s, page=0)


def test_update_changes_only_given_fields_and_moves_next_fire(db: Database) -> None:
    task_id = create(db, schedule="0 0 * * * *", description="keep me")
    later = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with db.session() as s:
        task = tasks.update_task(
            s, task_id, TaskUpdate(schedule="0 0 3 * * *", timezone="Asia/Tokyo"), now=later
        )
    assert task.description == "keep me"
    assert task.next_run_at == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)  # 03:00 JST
    assert task.updated_at == later
    with db.session() as s:
        task = tasks.update_task(s, task_id, TaskUpdate(status="paused"), now=later)
    assert task.next_run_at is None
    with db.session() as s:
        task = tasks.update_task(s, task_id, validated(TaskUpdate, {"schedule": None}), now=later)
    assert task.schedule is None


def test_update_with_a_bad_cron_changes_nothing(db: Database) -> None:
    task_id = create(db, schedule="0 0 * * * *")
    with pytest.raises(InvalidInput), db.session() as s:
        tasks.update_task(s, task_id, TaskUpdate(schedule="0 0 25 * * *", description="x"))
    with db.session() as s:
        task = tasks.get_task(s, task_id)
    assert (task.schedule, task.description) == ("0 0 * * * *", "")


def test_update_refuses_null_for_required_fields(db: Database) -> None:
    task_id = create(db)
    with pytest.raises(InvalidInput, match="command"), db.session() as s:
        tasks.update_task(s, task_id, validated(TaskUpdate, {"command": None}))


def test_rename_onto_an_existing_name_is_a_conflict(db: Database) -> None:
    create(db, name="one")
    two = create(db, name="two")
    with pytest.raises(Conflict), db.session() as s:
        tasks.update_task(s, two, TaskUpdate(name="one"))


def test_dependency_cycle_is_refused_and_named(db: Database) -> None:
    a = create(db, name="extract")
    b = create(db, name="transform", dependencies=[a])
    c = create(db, name="load", dependencies=[b])
    with pytest.raises(InvalidInput) as err, db.session() as s:
        tasks.update_task(s, a, TaskUpdate(dependencies=[c]))
    assert "extract -> load -> transform -> extract" in str(err.value)
    assert err.value.field == "dependencies"
    with pytest.raises(InvalidInput, match="itself"), db.session() as s:
        tasks.update_task(s, a, TaskUpdate(dependencies=[a]))
    with db.session() as s:
        assert tasks.get_task(s, a).dependencies == []
        assert tasks.get_task(s, c).dependencies == [b]


def test_delete_refuses_while_others_depend_unless_forced(db: Database) -> None:
    a = create(db, name="upstream")
    b = create(db, name="downstream", dependencies=[a])
    with pytest.raises(Conflict, match="'downstream'"), db.session() as s:
        tasks.delete_task(s, a)
    with db.session() as s:
        tasks.delete_task(s, "upstream", force=True)
    with db.session() as s:
        assert tasks.get_task(s, b).dependencies == []
        with pytest.raises(NotFound):
            tasks.get_task(s, a)


def test_delete_removes_the_task_runs(db: Database) -> None:
    task_id = create(db)
    with db.session() as s:
        s.add(TaskRun(task_id=task_id, task_type="shell", status="completed"))
    with db.session() as s:
        tasks.delete_task(s, task_id)
    with db.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(TaskRun)).scalar_one() == 0


WRITE_ONLY = frozenset({"task.write"})
WRITE_EXECUTE = frozenset({"task.write", "task.execute"})


@pytest.mark.parametrize(
    "fields",
    [{"schedule": "0 * * * * *"}, {"dependencies": "upstream"}],
    ids=["schedule", "dependencies"],
)
def test_a_task_that_runs_by_itself_needs_task_execute_to_create(
    db: Database, fields: dict[str, Any]
) -> None:
    if fields.get("dependencies") == "upstream":
        fields = {"dependencies": [create(db, name="upstream")]}
    with db.session() as s, pytest.raises(Forbidden, match="task.execute"):
        tasks.create_task(s, spec(**fields), now=NOW, scopes=WRITE_ONLY)
    with db.session() as s:
        assert s.exec(select(Task).where(Task.name == "backup")).first() is None
        created = tasks.create_task(s, spec(**fields), now=NOW, scopes=WRITE_EXECUTE)
    assert created.name == "backup"


def test_a_write_only_caller_may_create_unscheduled_or_paused_tasks(db: Database) -> None:
    with db.session() as s:
        tasks.create_task(s, spec(), now=NOW, scopes=WRITE_ONLY)
        paused = spec(name="paused", schedule="0 * * * * *", status="paused")
        tasks.create_task(s, paused, now=NOW, scopes=WRITE_ONLY)


@pytest.mark.parametrize(
    "change",
    [
        {"schedule": "0 * * * * *"},
        {"command": "cat /etc/shadow"},
        {"arguments": ["x"]},
        {"executor": "python"},
        {"metadata": {"http": {"method": "POST"}}},
        {"run_as": "root"},
        {"working_dir": "/etc"},
        {"environment": {"LD_PRELOAD": "/tmp/x.so"}},
    ],
)
def test_changing_what_a_scheduled_task_runs_needs_task_execute(
    db: Database, change: dict[str, Any]
) -> None:
    schedule = None if "schedule" in change else "0 0 * * * *"
    task_id = create(db, schedule=schedule)
    with db.session() as s, pytest.raises(Forbidden, match="task.execute"):
        tasks.update_task(s, task_id, validated(TaskUpdate, change), scopes=WRITE_ONLY)
    with db.session() as s:
        task = s.get(Task, task_id)
        assert task is not None and task.command == "echo hi" and task.arguments == []
        tasks.update_task(s, task_id, validated(TaskUpdate, change), scopes=WRITE_EXECUTE)


def test_resuming_a_paused_scheduled_task_by_update_needs_task_execute(db: Database) -> None:
    task_id = create(db, schedule="0 0 * * * *", status="paused")
    with db.session() as s, pytest.raises(Forbidden, match="task.execute"):
        resume = validated(TaskUpdate, {"status": "active"})
        tasks.update_task(s, task_id, resume, scopes=WRITE_ONLY)


def test_write_only_caller_may_edit_other_fields_and_resend_unchanged_ones(db: Database) -> None:
    task_id = create(db, schedule="0 0 * * * *", metadata={"owner": "ops"})
    unchanged = {"command": "echo hi", "description": "nightly", "metadata": {"owner": "me"}}
    with db.session() as s:
        task = tasks.update_task(s, task_id, validated(TaskUpdate, unchanged), scopes=WRITE_ONLY)
    assert task.description == "nightly"
    with db.session() as s:  # an unscheduled task: its command is the writer's to change
        other = tasks.create_task(s, spec(name="manual"), now=NOW)
        changed = validated(TaskUpdate, {"command": "echo changed"})
        assert tasks.update_task(s, other.id, changed, scopes=WRITE_ONLY).command == "echo changed"


def test_direct_database_access_is_not_scope_checked(db: Database) -> None:
    with db.session() as s:
        assert tasks.create_task(s, spec(schedule="0 * * * * *"), now=NOW, scopes=None).id
