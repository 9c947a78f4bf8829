"""[message_queue] type picks the broker class; building one does not connect."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.brokers.registry import create_broker
from schedd.config import load_settings
from schedd.db import create_database


@pytest.mark.parametrize(
    ("kind", "url", "cls"),
    [
        ("rabbitmq", "amqp://guest:guest@127.0.0.1:1/", RabbitMQBroker),
        ("redis", "redis://127.0.0.1:1/0", RedisBroker),
    ],
)
def test_the_registry_builds_the_configured_message_broker(
    kind: str, url: str, cls: type, tmp_path: Path
) -> None:
    settings = load_settings(
        env={
            "HOME": str(tmp_path),
            "SCHEDD_MESSAGE_QUEUE__TYPE": kind,
            "SCHEDD_MESSAGE_QUEUE__URL": url,
        }
    )
    db = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
    try:
        broker = create_broker(settings, db)  # nothing listens on port 1: lazy connect
        assert isinstance(broker, cls)
        assert not broker.claims_in_database
        broker.close()
    finally:
        db.dispose()


def test_the_redis_claim_idle_comes_from_the_configuration(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "SCHEDD_MESSAGE_QUEUE__TYPE": "redis",
        "SCHEDD_MESSAGE_QUEUE__URL": "redis://127.0.0.1:1/0",
    }
    default = RedisBroker(load_settings(env=env))
    tuned = RedisBroker(load_settings(env={**env, "SCHEDD_MESSAGE_QUEUE__CLAIM_IDLE_SECONDS": "2"}))
    try:
        assert (default.claim_idle, tuned.claim_idle) == (30.0, 2.0)
    finally:
        default.close()
        tuned.close()
