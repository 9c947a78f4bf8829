"""Small pieces of the API and auth that need no database or server."""

from __future__ import annotations

import logging
import socket
import stat
import string
from pathlib import Path

import pytest

from schedd.api import bootstrap
from schedd.api.errors import _field_of, status_of
from schedd.api.role import bind
from schedd.config import Settings
from schedd.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedError,
    Unauthorized,
    Unavailable,
)
from schedd.services import auth
from schedd.services.systemlog import (
    MAX_MESSAGE,
    QUEUE_LIMIT,
    SystemLogHandler,
    component_of,
    event_of,
)


def test_api_keys_have_the_seed_format_and_are_unique() -> None:
    keys = {auth.generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("scheduler_")
        rest = key.removeprefix("scheduler_")
        assert len(rest) == 32
        assert set(rest) <= set(string.ascii_letters + string.digits)
        assert auth.looks_like_key(key)


def test_keys_are_stored_as_sha256_hex() -> None:
    digest = auth.hash_key("scheduler_" + "a" * 32)
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    assert digest == auth.hash_key("scheduler_" + "a" * 32)
    assert digest != auth.hash_key("scheduler_" + "a" * 31 + "b")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("x"), 422),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (Unauthorized("x"), 401),
        (Forbidden("x"), 403),
        (Unavailable("x"), 503),
        (SchedError("x"), 400),
    ],
)
def test_each_error_maps_to_one_status(error: SchedError, status: int) -> None:
    assert status_of(error) == status


def test_validation_locations_become_field_names() -> None:
    assert _field_of(("body", "schedule")) == "schedule"
    assert _field_of(("body", "tags", 2)) == "tags.2"
    assert _field_of(("query", "size")) == "size"
    assert _field_of(("body",)) is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("::1", "http://[::1]:8080"),
        ("sched.example", "http://sched.example:8080"),
    ],
)
def test_api_url_is_what_a_local_client_dials(host: str, url: str) -> None:
    assert bootstrap.base_url(host, 8080) == url


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings.model_validate({"daemon": {"data_dir": str(tmp_path)}, **extra})


def test_embedded_jwt_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    secret = bootstrap.jwt_secret(settings)
    path = tmp_path / "jwt.secret"
    assert len(secret.encode()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bootstrap.jwt_secret(settings) == secret


def test_configured_jwt_secret_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, auth={"jwt_secret": "c" * 32})
    assert bootstrap.jwt_secret(settings) == "c" * 32
    assert not (tmp_path / "jwt.secret").exists()


def test_postgresql_without_jwt_secret_refuses_with_one_line(tmp_path: Path) -> None:
    settings = _settings(tmp_path, database={"url": "postgresql://db.example/sched"})
    with pytest.raises(ConfigError) as caught:
        bootstrap.jwt_secret(settings)
    message = str(caught.value)
    assert "auth.jwt_secret" in message and "JWT_SECRET" in message
    assert "\n" not in message


def test_a_stored_secret_that_is_too_short_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jwt.secret").write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        bootstrap.jwt_secret(_settings(tmp_path))


def test_bind_refuses_a_taken_port_with_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Unavailable, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_components_come_from_logger_names() -> None:
    assert component_of("schedd.scheduler.fire") == "scheduler"
    assert component_of("schedd.worker") == "worker"
    assert component_of("schedd") == "daemon"


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("schedd.api", logging.ERROR, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_events_keep_refs_and_cut_long_messages() -> None:
    event = event_of(_record("x" * (MAX_MESSAGE + 10), task_id=3, secret_thing="no"))
    assert len(event["message"]) == MAX_MESSAGE
    assert event["refs"] == {"task_id": 3}
    assert event["level"] == "error" and event["levelno"] == logging.ERROR


def test_handler_drops_and_counts_when_its_queue_is_full() -> None:
    handler = SystemLogHandler()
    for _ in range(QUEUE_LIMIT + 3):
        handler.emit(_record("m"))
    assert handler.queue.qsize() == QUEUE_LIMIT
    assert handler.dropped == 3
