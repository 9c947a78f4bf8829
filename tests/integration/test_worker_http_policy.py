"""The http policy through a real worker (issue 14, done when): a worker with the
default configuration refuses a server on 127.0.0.2 and fails the run naming the
address and the key; with ``http_allow = ["127.0.0.2/32"]`` it reaches it. Only
loopback listeners this test starts are ever connected to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.db import Database, create_database, migrate
from tests.unit.test_executor_http import Server, serve
from tests.workerkit import add_run, make_task, running_worker, wait_for_status


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def other_server() -> Iterator[Server]:
    yield from serve("127.0.0.2")


def test_a_default_worker_refuses_127_0_0_2(
    db: Database, tmp_path: Path, other_server: Server
) -> None:
    run_id = add_run(db, make_task(db, other_server.url + "/ok", executor="http"))
    with running_worker(db, tmp_path):
        run = wait_for_status(db, run_id, {"failed", "completed"}, timeout=30)
    assert run.status == "failed"
    assert "127.0.0.2" in (run.error_message or "")
    assert "http_allow" in (run.error_message or "")
    assert other_server.requests == []


def test_http_allow_opens_127_0_0_2(db: Database, tmp_path: Path, other_server: Server) -> None:
    run_id = add_run(db, make_task(db, other_server.url + "/ok", executor="http"))
    with running_worker(db, tmp_path, http_allow='["127.0.0.2/32"]'):
        run = wait_for_status(db, run_id, {"failed", "completed"}, timeout=30)
    assert run.status == "completed", run.error_message
    assert [r["path"] for r in other_server.requests] == ["/ok"]
