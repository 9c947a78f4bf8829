"""`schedctl --db ... system health` asks the broker the configuration names, as the API's
/health does, on the real PostgreSQL, RabbitMQ and Redis: in-process (CliRunner) and as
the operator runs it (a subprocess with DATABASE_URL and the production config)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from schedctl.direct_client import BROKER_HEALTH_TIMEOUT
from schedctl.exits import ExitStatus
from schedd import __version__
from schedd.api.app import create_app
from schedd.brokers.registry import create_broker
from schedd.config import load_settings
from schedd.db import create_database
from tests.apikit import SECRET, serve
from tests.proc import isolated_env, run, schedctl
from tests.schedctlkit import Cli

pytestmark = pytest.mark.external_service

PRODUCTION = Path(__file__).resolve().parents[2] / "etc" / "schedd.production.toml"
UNREACHABLE = {"rabbitmq": "amqp://guest:guest@127.0.0.1:1/", "redis": "redis://127.0.0.1:1/0"}
LABEL = {"rabbitmq": "RabbitMQ", "redis": "Redis"}


def report(status: str, broker: str) -> dict[str, object]:
    return {
        "status": status,
        "database": "ok",
        "broker": broker,
        "version": __version__,
        "pending_runs": 0,
        "oldest_pending_seconds": None,
        "isolation": {},  # no worker runs
        "clock_skew_seconds": ANY,  # this host's clock against the database's
    }


def broker_env(kind: str, url: str) -> dict[str, str]:
    """The broker chosen by SCHEDD_* and its URL from the seed variable, as schedd reads."""
    variable = {"rabbitmq": "RABBITMQ_URL", "redis": "REDIS_URL"}[kind]
    return {"SCHEDD_MESSAGE_QUEUE__TYPE": kind, variable: url}


@pytest.fixture
def cli(tmp_path: Path, pg_url: str) -> Cli:
    return Cli(tmp_path, pg_url)


def test_rabbitmq_named_by_the_production_config_is_asked(cli: Cli, rabbitmq_url: str) -> None:
    result = cli(
        "-c", str(PRODUCTION), "-o", "json", "system", "health",
        env={"RABBITMQ_URL": rabbitmq_url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == report("ok", "ok")
    assert result.stderr == ""


def test_redis_named_by_the_environment_is_asked(cli: Cli, redis_url: str) -> None:
    result = cli("-o", "json", "system", "health", env=broker_env("redis", redis_url))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == report("ok", "ok")


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_an_unreachable_broker_is_unavailable_with_the_reason_at_once(cli: Cli, kind: str) -> None:
    start = time.monotonic()
    result = cli("-o", "json", "system", "health", env=broker_env(kind, UNREACHABLE[kind]))
    elapsed = time.monotonic() - start
    # The same answer and exit code as over HTTP: degraded, exit 1.
    assert result.exit_code == ExitStatus.ERROR
    assert json.loads(result.stdout) == report("degraded", "unavailable")
    assert "Traceback" not in result.stderr
    [reason] = result.stderr.strip().splitlines()
    assert reason.startswith(f"broker: {LABEL[kind]} unreachable: ")
    assert "refused" in reason.lower()
    assert elapsed < BROKER_HEALTH_TIMEOUT


def test_the_table_shows_the_broker_and_stderr_why(cli: Cli) -> None:
    result = cli(
        "-c", str(PRODUCTION), "system", "health",
        env={"RABBITMQ_URL": UNREACHABLE["rabbitmq"]},
    )  # fmt: skip
    assert result.exit_code == ExitStatus.ERROR
    assert "status    degraded" in result.stdout
    assert "broker    unavailable" in result.stdout
    assert "broker: RabbitMQ unreachable:" in result.stderr


@pytest.mark.parametrize(
    "kind",
    [
        "database",
        pytest.param("rabbitmq", id="rabbitmq"),
        pytest.param("redis", id="redis"),
        pytest.param("rabbitmq-down", id="rabbitmq-down"),
    ],
)
def test_http_and_db_mode_agree(
    tmp_path: Path, pg_url: str, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "database":
        env: dict[str, str] = {}
    elif kind == "rabbitmq-down":
        env = broker_env("rabbitmq", UNREACHABLE["rabbitmq"])
    else:
        env = broker_env(kind, request.getfixturevalue(f"{kind}_url"))
    # The API as `schedd run --role api` builds it from the same configuration.
    settings = load_settings(
        None, {"HOME": str(tmp_path), "JWT_SECRET": SECRET, **env}, {"database.url": pg_url}
    )
    db = create_database(pg_url, max_connections=2)
    broker = create_broker(settings, db)
    cli = Cli(tmp_path, pg_url)
    try:
        with serve(create_app(settings, db, broker)) as url:
            over_http = cli("--api", url, "-o", "json", "system", "health", direct=False)
            body = httpx.get(url + "/health", timeout=10).json()
    finally:
        broker.close()
        db.dispose()
    direct = cli("-o", "json", "system", "health", env=env)
    # Each read of the clock difference is its own measurement (milliseconds apart).
    http_report, direct_report = json.loads(over_http.stdout), json.loads(direct.stdout)
    for one in (http_report, direct_report, body):
        assert abs(one.pop("clock_skew_seconds")) < 1
    assert http_report == body
    assert (direct.exit_code, direct_report) == (over_http.exit_code, http_report)
    expected = "unavailable" if kind == "rabbitmq-down" else "ok"
    assert body["broker"] == expected


# --- as the operator runs it -------------------------------------------------------------


def ctl(home: Path, pg_url: str, env: dict[str, str], *args: str) -> Any:
    environ = isolated_env(home, {"DATABASE_URL": pg_url, **env})
    return run(schedctl(*args), environ, home, timeout=60)


def test_the_reported_command_reports_rabbitmq(
    tmp_path: Path, pg_url: str, rabbitmq_url: str
) -> None:
    # DATABASE_URL alone chooses direct mode; the file says rabbitmq, RABBITMQ_URL where.
    result = ctl(
        tmp_path, pg_url, {"RABBITMQ_URL": rabbitmq_url},
        "-c", str(PRODUCTION), "-o", "json", "system", "health",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == report("ok", "ok")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung broker)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_a_broker_that_does_not_answer_is_given_up_on_quickly(
    tmp_path: Path, pg_url: str, silent_port: int, kind: str
) -> None:
    url = {"rabbitmq": "amqp://guest:guest@127.0.0.1:{}/", "redis": "redis://127.0.0.1:{}/0"}
    # What the same command costs with a broker that answers at once (the database):
    # start-up and queries, which a loaded machine stretches.
    start = time.monotonic()
    baseline = ctl(tmp_path, pg_url, {}, "-o", "json", "system", "health")
    base = time.monotonic() - start
    assert baseline.returncode == 0, baseline.stderr
    start = time.monotonic()
    result = ctl(
        tmp_path, pg_url, broker_env(kind, url[kind].format(silent_port)),
        "-o", "json", "system", "health",
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.returncode == ExitStatus.ERROR, result.stderr
    assert json.loads(result.stdout) == report("degraded", "unavailable")
    assert result.stderr.strip() == (
        f"broker: {kind}: no answer within {BROKER_HEALTH_TIMEOUT:g} s"
    )
    # Left to itself, pika waits 15 s for the handshake and redis-py 5 s per attempt.
    assert elapsed < base + BROKER_HEALTH_TIMEOUT + 2, (elapsed, base)
