"""etc/schedd.production.toml is valid with the environment it documents, and holds no secret."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from schedd import preflight
from schedd.config import load_settings
from schedd.errors import ConfigError

PRODUCTION = Path(__file__).resolve().parents[2] / "etc" / "schedd.production.toml"
SECRET = "jwt-" + "s" * 40
ENV = {
    "JWT_SECRET": SECRET,
    "DATABASE_URL": "postgresql://sched:db-password@db.internal:5432/sched",
    "RABBITMQ_URL": "amqps://sched:mq-password@mq.internal:5671/sched",
}


def test_valid_with_the_documented_environment() -> None:
    settings = load_settings(PRODUCTION, env=ENV)
    assert not settings.is_embedded
    assert settings.database.url == ENV["DATABASE_URL"]
    assert settings.message_queue.type == "rabbitmq"
    assert settings.message_queue.url == ENV["RABBITMQ_URL"]
    assert settings.auth.jwt_secret is not None
    assert settings.auth.jwt_secret.get_secret_value() == SECRET
    assert settings.observability.log_format == "json"
    assert settings.observability.metrics_auth
    assert settings.worker.effective_fence_seconds < settings.effective_heartbeat_timeout
    assert all(days > 0 for days in settings.retention.model_dump().values())


def test_the_commented_redis_alternative_is_valid() -> None:
    env = {
        **ENV,
        "SCHEDD_MESSAGE_QUEUE__TYPE": "redis",
        "REDIS_URL": "rediss://:pw@cache.internal:6379/0",
    }
    settings = load_settings(PRODUCTION, env=env)
    assert settings.message_queue.type == "redis"
    assert settings.message_queue.url == env["REDIS_URL"]


def test_a_missing_broker_url_names_the_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "RABBITMQ_URL"}
    settings = load_settings(PRODUCTION, env=env)
    with pytest.raises(ConfigError, match="RABBITMQ_URL"):
        preflight.check(settings, settings.daemon.roles, host=False)


def test_no_secret_is_written_in_the_file() -> None:
    data = tomllib.loads(PRODUCTION.read_text())
    assert "jwt_secret" not in data["auth"]
    assert "url" not in data["message_queue"]
    # A database URL without a password: user@host, no user:password@host.
    userinfo = data["database"]["url"].split("://", 1)[1].split("@", 1)[0]
    assert ":" not in userinfo
