"""Shared fixtures: databases on SQLite and PostgreSQL, service URLs."""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.db import Database, create_database, migrate
from tests import services


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that fresh test databases are copied from."""
    services.check_postgres()
    with services.fresh_pg_database() as url:
        db = create_database(url)
        migrate(db)
        db.dispose()
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database for one test."""
    with services.fresh_pg_database(template=pg_template) as url:
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database with no schema at all."""
    services.check_postgres()
    with services.fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sched.db'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that the tests' databases are copies of."""
    path = tmp_path_factory.mktemp("template") / "sched.db"
    database = create_database(f"sqlite:///{path}")
    migrate(database)
    database.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.external_service)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database on each backend: the same test runs on both."""
    if request.param == "sqlite":
        path = tmp_path / "sched.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        path.chmod(0o600)
        database = create_database(f"sqlite:///{path}")
    else:
        database = create_database(request.getfixturevalue("pg_url"), max_connections=5)
    yield database
    database.dispose()


@pytest.fixture
def rabbitmq_url() -> str:
    if not services.port_open("127.0.0.1", 5672):
        services.unavailable("RabbitMQ", "nothing listens on 127.0.0.1:5672")
    return services.RABBITMQ_URL


@pytest.fixture
def redis_url() -> str:
    if not services.port_open("127.0.0.1", 6379):
        services.unavailable("Redis", "nothing listens on 127.0.0.1:6379")
    return services.REDIS_URL


# Tests share the real RabbitMQ and Redis, and a few restart them (marked
# `broker_restart`). The suite runs on xdist workers, so a restart would cut the
# connections of a broker test on another worker: every broker test holds a shared lock
# on one file for its whole run, a restarting test an exclusive one. The lock is the
# machine's, so two test sessions on one host (a developer's and CI's) keep out of each
# other's way too. (xdist's own grouping marks do not reach its scheduler under pytest 9.)
BROKER_FIXTURES = {"rabbitmq_url", "redis_url"}
BROKER_PARAMS = {"rabbitmq", "redis"}
BROKER_LOCK = Path(tempfile.gettempdir()) / "sched-tests-brokers.lock"


def _uses_broker(item: pytest.Item) -> bool:
    if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and bool(BROKER_PARAMS & {str(v) for v in callspec.params.values()})


@pytest.fixture(autouse=True)
def _broker_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    item = request.node
    if item.get_closest_marker("broker_restart") is not None:
        mode = fcntl.LOCK_EX
    elif _uses_broker(item):
        mode = fcntl.LOCK_SH
    else:
        yield
        return
    with BROKER_LOCK.open("a") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Modules with slow tests first (kept whole, for their module fixtures), so no
    # worker is left with a long test at the end.
    slow = {item.module for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.module not in slow)
