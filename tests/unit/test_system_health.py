"""The health check the API's /health and `schedctl --db system health` share, and how
--db builds the broker it asks: for that command only, closed after it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from schedd import __version__
from schedd.brokers import registry
from schedd.brokers.base import Broker
from schedd.config import Settings
from schedd.db import Database, create_database
from schedd.services.system import broker_problem, check_health
from tests.apikit import RecordingBroker
from tests.schedctlkit import Cli, migrated_sqlite


class FailingBroker(RecordingBroker):
    """A broker whose client library raises its own error, not Unavailable."""

    name = "failing"

    def health(self) -> None:
        raise RuntimeError("handshake timed out\nsecond line")


class SilentBroker(RecordingBroker):
    """A broker that does not answer until released."""

    name = "silent"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def health(self) -> None:
        self.release.wait(10)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Any:
    database = create_database(migrated_sqlite(tmp_path / "sched.db"))
    yield database
    database.dispose()


def test_check_health_reports_each_component_and_why(sqlite_db: Database) -> None:
    assert check_health(sqlite_db, None).report.model_dump() == {
        "status": "ok",
        "database": "ok",
        "broker": "none",
        "version": __version__,
        "pending_runs": 0,
        "oldest_pending_seconds": None,
        "isolation": {},
        "clock_skew_seconds": 0.0,
    }
    broker = RecordingBroker()
    assert check_health(sqlite_db, broker).report.broker == "ok"
    broker.down = True
    health = check_health(sqlite_db, broker)
    assert (health.report.status, health.report.broker) == ("degraded", "unavailable")
    assert health.reasons == {"broker": "broker down (test)"}


def test_check_health_without_the_database_is_unavailable() -> None:
    missing = create_database(
        "postgresql://nobody@127.0.0.1:1/none", max_connections=1, connection_timeout=1
    )
    try:
        health = check_health(missing, RecordingBroker())
    finally:
        missing.dispose()
    assert (health.report.status, health.report.database) == ("unavailable", "unavailable")
    assert set(health.reasons) == {"database"}


def test_a_library_error_is_a_reason_not_a_crash() -> None:
    assert broker_problem(FailingBroker()) == "failing: RuntimeError: handshake timed out"


def test_a_broker_that_does_not_answer_is_unavailable_after_the_timeout() -> None:
    broker = SilentBroker()
    start = time.monotonic()
    try:
        assert broker_problem(broker, timeout=0.2) == "silent: no answer within 0.2 s"
        assert time.monotonic() - start < 2
    finally:
        broker.release.set()
    assert broker_problem(broker, timeout=5) is None


def test_db_mode_builds_the_broker_for_health_only_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[RecordingBroker] = []

    class Closing(RecordingBroker):
        closed = False

        def close(self) -> None:
            self.closed = True

    def create(settings: Settings, db: Database) -> Broker:
        assert settings.message_queue.type == "database"  # defaults + environment
        built.append(Closing())
        return built[-1]

    # Imported by the health command when it runs (start-up stays light).
    monkeypatch.setattr(registry, "create_broker", create)
    cli = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))
    cli("task", "create", "t", "true", "--paused")
    cli("task", "list")
    assert built == []
    assert cli.json("system", "health")["broker"] == "ok"
    assert len(built) == 1 and built[0].closed


def test_db_mode_health_on_the_default_database_broker(tmp_path: Path) -> None:
    # No config file, no broker variables: the database is the queue, and it answers.
    cli = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))
    result = cli("system", "health")
    assert result.exit_code == 0, result.output
    assert "broker    ok" in result.stdout
    assert result.stderr == ""


def test_health_counts_active_workers_by_isolation_mode(sqlite_db: Database) -> None:
    from schedd.services import workers

    for number, mode in enumerate(["hybrid", "hybrid", "none", "cgroup2"]):
        with sqlite_db.session() as session:
            workers.register(
                session,
                worker_id=f"w{number}",
                hostname="h",
                ip_address=None,
                task_types=["shell"],
                executor_types=["shell"],
                max_concurrent_tasks=1,
                pid=number + 1,
                version="t",
                stale_after=60,
                isolation=mode,
            )
    with sqlite_db.session() as session:
        workers.deregister(session, "w3")
    assert check_health(sqlite_db, None).report.isolation == {"hybrid": 2, "none": 1}
