"""Shared fixtures: databases on SQLite and PostgreSQL, service URLs."""

from __future__ import annotations

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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.external_service)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database on each backend: the same test runs on both."""
    if request.param == "sqlite":
        database = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
        migrate(database)
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
