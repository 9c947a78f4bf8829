"""`schedctl worker`, `system` and shell completion, in --db mode on a temporary database."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from schedctl.commands import system as system_command
from schedd.db import Database, create_database
from schedd.models import SystemLog
from schedd.services import workers
from schedd.types import utcnow
from tests.proc import isolated_env
from tests.schedctlkit import Cli, migrated_sqlite, one_line


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))


@pytest.fixture
def db(cli: Cli) -> Iterator[Database]:
    assert cli.db_url is not None
    database = create_database(cli.db_url)
    yield database
    database.dispose()


def register(db: Database, worker_id: str, port: int | None = None) -> None:
    with db.session() as session:
        workers.register(
            session,
            worker_id=worker_id,
            hostname="host-1",
            ip_address="10.0.0.5",
            port=port,
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=4,
            pid=4242,
            version="0.1.0",
            stale_after=90,
        )


def log_event(db: Database, message: str, level: str = "ERROR", ago: float = 0) -> None:
    with db.session() as session:
        session.add(
            SystemLog(
                time=utcnow() - timedelta(seconds=ago),
                level=level,
                levelno={"INFO": 20, "WARNING": 30, "ERROR": 40}[level],
                component="scheduler",
                message=message,
            )
        )


def test_worker_list_show_drain_and_remove(cli: Cli, db: Database) -> None:
    register(db, "w1")
    assert cli("worker", "list").stdout.splitlines()[1].split()[:4] == [
        "w1",
        "host-1",
        "active",
        "0/4",
    ]
    assert cli.json("worker", "show", "w1")["ip_address"] == "10.0.0.5"
    assert "- (no metrics listener)" in cli("worker", "show", "w1").stdout
    register(db, "w2", port=9464)
    assert cli("worker", "list").stdout.splitlines()[2].split()[8] == "9464"
    assert cli.json("worker", "show", "w2")["port"] == 9464
    shown = cli("worker", "show", "w2").stdout
    assert "10.0.0.5:9464" in shown and "9464 (metrics)" in shown
    assert cli("worker", "drain", "w1").stdout == "worker w1 is draining\n"
    refused = cli("worker", "remove", "w1")
    assert refused.exit_code == 6
    assert "drain it first" in one_line(refused)
    with db.session() as session:
        workers.deregister(session, "w1")
    assert cli.json("worker", "remove", "w1") == {"id": "w1", "removed": True}
    assert cli.json("worker", "list", "--status", "offline")["total"] == 0


def test_unknown_worker_is_not_found(cli: Cli) -> None:
    result = cli("worker", "show", "ghost")
    assert (result.exit_code, one_line(result)) == (3, "error: worker 'ghost' not found")


def test_system_logs_filter_by_level_and_print_oldest_first(cli: Cli, db: Database) -> None:
    log_event(db, "first failure", ago=60)
    log_event(db, "just so", level="INFO", ago=30)
    log_event(db, "second failure")
    lines = cli("system", "logs", "--level", "error").stdout.splitlines()
    assert [line.split("  ")[-1].strip() for line in lines[1:3]] == [
        "first failure",
        "second failure",
    ]
    assert cli.json("system", "logs", "--since", "45s")["total"] == 2
    bad = cli("system", "logs", "--level", "loud")
    assert bad.exit_code == 65
    assert "unknown level" in one_line(bad)


def test_system_logs_follow_prints_new_events_until_interrupted(
    cli: Cli, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_event(db, "before", ago=5)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:
            log_event(db, "while following")
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(system_command.time, "sleep", nap)
    result = cli("-o", "json", "system", "logs", "-f")
    assert result.exit_code == 130
    assert [line.count("while following") for line in result.stdout.splitlines()] == [0, 1]


def test_stats_and_health_in_db_mode(cli: Cli) -> None:
    cli("task", "create", "t", "true", "--paused")
    stats = cli.json("system", "stats")
    assert stats["tasks"] == {"active": 0, "paused": 1}
    assert stats["queue_depth"] == 0
    # The database broker (the default) answers as the database does, as over HTTP.
    assert cli.json("system", "health") == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "version": stats["version"],
        "pending_runs": 0,
        "oldest_pending_seconds": None,
        "isolation": {},
        "clock_skew_seconds": 0.0,
    }


def test_stats_and_health_show_the_backlog_in_tables(cli: Cli) -> None:
    cli("task", "create", "t", "true", "--paused")
    cli("task", "trigger", "t")
    assert re.search(r"queue depth\s+1 pending, oldest \d", cli("system", "stats").stdout)
    assert re.search(r"backlog\s+1 pending, oldest \d", cli("system", "health").stdout)


def test_audit_names_the_os_user_for_db_changes(cli: Cli) -> None:
    cli("task", "create", "t", "true")
    entry = cli.json("system", "audit")["items"][0]
    assert (entry["action"], entry["target"]) == ("task.create", "task:1")
    assert entry["actor"].startswith("db:")


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    env = isolated_env(
        tmp_path,
        {
            "_SCHEDCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": "schedctl task tr",
            "COMP_CWORD": "2",
        },
    )
    result = subprocess.run(
        [sys.executable, "-m", "schedctl"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["trigger"]
