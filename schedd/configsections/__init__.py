"""The sections of the configuration: one pydantic model per TOML table, a module each
(base holds what they share).

Each model checks its own values (types, ranges, URL schemes, time zones, level
directives); :mod:`schedd.config` puts them together in ``Settings`` and loads them.
``etc/schedd.toml`` documents every key.
"""

from __future__ import annotations

from schedd.configsections.api import ApiSettings
from schedd.configsections.auth import JWT_SECRET_HINT, MIN_JWT_SECRET_BYTES, AuthSettings
from schedd.configsections.base import SEED_VARIABLES, Section, env_of, seconds_text
from schedd.configsections.daemon import ROLES, DaemonSettings, Role
from schedd.configsections.database import (
    DATABASE_SCHEMES,
    DatabaseSettings,
    default_database_url,
)
from schedd.configsections.message_queue import (
    BROKER_SCHEMES,
    BROKER_VARIABLES,
    NAMESPACE_PATTERN,
    MessageQueueSettings,
    default_namespace,
)
from schedd.configsections.notify import (
    CHANNEL_KEYS,
    ChannelSettings,
    ChannelType,
    NotifySettings,
    check_channel_url,
)
from schedd.configsections.observability import ObservabilitySettings
from schedd.configsections.retention import RetentionSettings
from schedd.configsections.scheduler import SchedulerSettings
from schedd.configsections.worker import (
    DAEMON_SECRETS,
    EXECUTOR_TYPES,
    ExecutorType,
    WorkerSettings,
)

__all__ = [
    "BROKER_SCHEMES",
    "BROKER_VARIABLES",
    "CHANNEL_KEYS",
    "DAEMON_SECRETS",
    "DATABASE_SCHEMES",
    "EXECUTOR_TYPES",
    "JWT_SECRET_HINT",
    "MIN_JWT_SECRET_BYTES",
    "NAMESPACE_PATTERN",
    "ROLES",
    "SEED_VARIABLES",
    "ApiSettings",
    "AuthSettings",
    "ChannelSettings",
    "ChannelType",
    "DaemonSettings",
    "DatabaseSettings",
    "ExecutorType",
    "MessageQueueSettings",
    "NotifySettings",
    "ObservabilitySettings",
    "RetentionSettings",
    "Role",
    "SchedulerSettings",
    "Section",
    "WorkerSettings",
    "check_channel_url",
    "default_database_url",
    "default_namespace",
    "env_of",
    "seconds_text",
]
