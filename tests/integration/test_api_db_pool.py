"""The PostgreSQL pool pings a connection only after it sat idle, and replaces a dead one.

Every API request checks a connection out; ``pool_pre_ping`` would add a round trip to
each. These tests pin down what replaces it: a connection back in the pool a moment
ago is used without a ping, an idle one is pinged, and one whose server process is
gone (a restart, an idle timeout) is replaced before the caller sees an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from schedd import db as dbmod
from schedd.api.app import create_app
from schedd.db import Database, create_database
from schedd.schemas import SCOPES
from schedd.services import auth
from tests import services
from tests.apikit import serve, settings_for

pytestmark = pytest.mark.external_service


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    database = create_database(pg_url, max_connections=1)
    yield database
    database.dispose()


@pytest.fixture
def pings(pg: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pings of ``pg``'s dialect."""
    counted: list[int] = []
    ping = pg.engine.dialect.do_ping

    def counting(dbapi_conn: Any) -> bool:
        counted.append(1)
        return ping(dbapi_conn)

    monkeypatch.setattr(pg.engine.dialect, "do_ping", counting)
    return counted


def backend_pid(database: Database) -> int:
    with database.session() as session:
        return int(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    with services.pg_admin_engine().connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()


def test_a_connection_used_a_moment_ago_is_not_pinged(pg: Database, pings: list[int]) -> None:
    first = backend_pid(pg)  # a new connection: no ping either
    for _ in range(5):
        assert backend_pid(pg) == first
    assert pings == []


def test_an_idle_connection_is_pinged(
    pg: Database, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend_pid(pg)
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert backend_pid(pg) == first
    assert pings == [1]


def test_a_dead_idle_connection_is_replaced_before_use(
    pg: Database, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend_pid(pg)
    terminate(first)
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 0.0)
    second = backend_pid(pg)  # no error: the ping found it dead, the pool reconnected
    assert second != first
    assert pings == [1]


def test_the_api_answers_after_its_idle_connection_was_killed(
    pg: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pg.session() as session:
        key = auth.create_api_key(session, "pool", list(SCOPES), creator=None).key
    app = create_app(settings_for(tmp_path), pg)
    headers = {"Authorization": f"Bearer {key}"}
    with serve(app) as base:
        assert httpx.get(f"{base}/api/whoami", headers=headers).status_code == 200
        terminate(backend_pid(pg))  # the pool's only connection
        monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 0.0)
        response = httpx.get(f"{base}/api/whoami", headers=headers)
        assert response.status_code == 200, response.text


def test_a_connection_that_died_in_use_fails_once_then_the_pool_reconnects(
    pg: Database, pings: list[int]
) -> None:
    """Inside the idle window nothing is pinged: a connection killed then fails the
    transaction that uses it (the API answers 503), and the pool replaces it."""
    first = backend_pid(pg)
    terminate(first)
    with pytest.raises(sa.exc.OperationalError):
        backend_pid(pg)
    assert backend_pid(pg) != first
    assert pings == []
