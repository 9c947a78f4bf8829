"""Choose the broker named by ``[message_queue] type``."""

from __future__ import annotations

import importlib
import logging

from schedd.brokers.base import Broker
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import ConfigError
from schedd.preflight import require_broker_url

log = logging.getLogger("schedd.brokers")

# type -> "module:class"; each class is built with (settings, db).
BROKERS: dict[str, str] = {
    "database": "schedd.brokers.database:DatabaseBroker",
    "rabbitmq": "schedd.brokers.rabbitmq:RabbitMQBroker",
    "redis": "schedd.brokers.redis:RedisBroker",
}


def create_broker(settings: Settings, db: Database) -> Broker:
    kind = settings.message_queue.type
    target = BROKERS.get(kind)
    if target is None:
        raise ConfigError(
            settings.source or "configuration",
            "message_queue.type",
            f"broker {kind!r} is not available in this build (have: {', '.join(BROKERS)})",
        )
    require_broker_url(settings)
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    broker: Broker = cls(settings, db)
    if kind != "database":
        log.info("message queue: %s, namespace %s", kind, settings.broker_namespace)
    return broker
