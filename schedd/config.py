"""Settings for schedd and schedctl.

Precedence, lowest first: defaults < TOML file < the seed's environment variables
(``DATABASE_URL``, ``API_PORT``...) < ``SCHEDD_<SECTION>__<KEY>`` variables < flag
overrides. :func:`load_settings` gathers the sources (see :mod:`schedd.configfile`) and
validates once; every problem is a one-line :class:`~schedd.errors.ConfigError` naming
the file or variable, the dotted key and the reason. ``etc/schedd.toml`` documents
every key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, ValidationInfo, model_validator

from schedd import configfile
from schedd.configfile import SettingError, default_data_dir, expand_path, find_config_file
from schedd.configsections import (
    BROKER_SCHEMES,
    BROKER_VARIABLES,
    DATABASE_SCHEMES,
    EXECUTOR_TYPES,
    MIN_JWT_SECRET_BYTES,
    ROLES,
    SEED_VARIABLES,
    ApiSettings,
    AuthSettings,
    ChannelSettings,
    DaemonSettings,
    DatabaseSettings,
    MessageQueueSettings,
    NotifySettings,
    ObservabilitySettings,
    RetentionSettings,
    SchedulerSettings,
    Section,
    WorkerSettings,
    default_database_url,
    default_namespace,
    env_of,
    seconds_text,
)

# The names other modules import from here (the sections live in configsections).
__all__ = [
    "BROKER_SCHEMES",
    "BROKER_VARIABLES",
    "DATABASE_SCHEMES",
    "EXECUTOR_TYPES",
    "MIN_JWT_SECRET_BYTES",
    "ROLES",
    "SEED_VARIABLES",
    "ApiSettings",
    "AuthSettings",
    "ChannelSettings",
    "DaemonSettings",
    "DatabaseSettings",
    "MessageQueueSettings",
    "NotifySettings",
    "ObservabilitySettings",
    "RetentionSettings",
    "SchedulerSettings",
    "Settings",
    "WorkerSettings",
    "check_file",
    "default_database_url",
    "find_config_file",
    "load_settings",
    "render_toml",
]


class Settings(Section):
    """Everything schedd and schedctl are configured with; see ``etc/schedd.toml``."""

    # Without a URL the database is filled in from daemon.data_dir (see below).
    database: DatabaseSettings = Field(
        default_factory=lambda: DatabaseSettings(
            url=default_database_url(default_data_dir(os.environ))
        )
    )
    message_queue: MessageQueueSettings = Field(default_factory=MessageQueueSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _database_in_data_dir(cls, data: Any, info: ValidationInfo) -> Any:
        """Without a database URL, the embedded database lives in ``daemon.data_dir``."""
        if not isinstance(data, dict):
            return data
        database = data.get("database", {})
        if not isinstance(database, dict) or "url" in database:
            return data
        daemon = data.get("daemon") or {}
        data_dir = daemon.get("data_dir") if isinstance(daemon, dict) else daemon.data_dir
        env = env_of(info)
        if data_dir is None:
            data_dir = str(default_data_dir(env))
        # A bad data_dir fails its own validator; until then any valid URL will do.
        valid = isinstance(data_dir, str) and data_dir.strip()
        url = default_database_url(expand_path(data_dir, env)) if valid else "sqlite://"
        return {**data, "database": {**database, "url": url}}

    @model_validator(mode="after")
    def _heartbeat_timeout_outlasts_fence(self) -> Self:
        interval = self.worker.heartbeat_interval
        timeout = self.scheduler.heartbeat_timeout
        if timeout is not None and timeout <= interval:
            raise SettingError(
                f"scheduler.heartbeat_timeout ({seconds_text(timeout)}) must be longer than"
                f" worker.heartbeat_interval ({seconds_text(interval)})",
                "scheduler.heartbeat_timeout",
                "worker.heartbeat_interval",
            )
        fence, timeout = self.worker.effective_fence_seconds, self.effective_heartbeat_timeout
        if fence >= timeout:
            # The fence must end first: a worker cut off from the database stops its
            # runs before the scheduler declares it dead and hands them to another.
            raise SettingError(
                f"the worker fence time ({seconds_text(fence)}) must be shorter than the"
                f" scheduler's heartbeat timeout ({seconds_text(timeout)})",
                "worker.fence_seconds",
                "scheduler.heartbeat_timeout",
                "worker.heartbeat_interval",
            )
        return self

    @property
    def is_embedded(self) -> bool:
        """True when the database is SQLite (one host, one scheduler)."""
        return self.database.is_sqlite

    @property
    def broker_namespace(self) -> str:
        """``message_queue.namespace``, or the one derived from the database."""
        return self.message_queue.namespace or default_namespace(self.database.url)

    @property
    def effective_heartbeat_timeout(self) -> float:
        """Seconds without a heartbeat before a worker is declared offline."""
        if self.scheduler.heartbeat_timeout is not None:
            return self.scheduler.heartbeat_timeout
        return 3 * self.worker.heartbeat_interval

    @property
    def effective_fence_seconds(self) -> float:
        return self.worker.effective_fence_seconds

    @property
    def effective_task_types(self) -> list[str]:
        return self.worker.effective_task_types


def _seed_variables(chosen: configfile.Layer) -> dict[str, str]:
    # RABBITMQ_URL and REDIS_URL may both be set: the broker that the file, SCHEDD_* and
    # the flags choose decides which one (if either) applies.
    broker = chosen.get("message_queue.type")
    broker = broker.strip().lower() if isinstance(broker, str) else "database"
    if broker in BROKER_VARIABLES:
        return {**SEED_VARIABLES, BROKER_VARIABLES[broker]: "message_queue.url"}
    return SEED_VARIABLES


def load_settings(
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """The effective settings: defaults < TOML file < seed variables < ``SCHEDD_*``
    variables < ``overrides`` (dotted keys from flags, None meaning "not given").

    ``config_path`` None searches for a file (:func:`find_config_file`); ``env``
    defaults to ``os.environ``. Raises ConfigError for any unknown key or bad value.
    """
    env = os.environ if env is None else env
    path = find_config_file(config_path, env)
    raw = configfile.gather(Settings, path, env, overrides or {}, _seed_variables)
    values: dict[str, Any] = {**raw.values, "source": str(path) if path else None}
    # Resolved here from ``env`` so an explicit env never reads the process's HOME.
    values.setdefault("daemon", {}).setdefault("data_dir", str(default_data_dir(env)))
    try:
        return Settings.model_validate(values, context={"env": env})
    except ValidationError as exc:
        fallback = str(path) if path else configfile.DEFAULTS
        raise configfile.config_error(exc, Settings, raw.sources, fallback) from None


def check_file(path: str | Path) -> Settings:
    """Validate one file on its own: no environment, no flags."""
    return load_settings(path, env={})


def render_toml(settings: Settings, *, redact: bool = True) -> str:
    """``settings`` as TOML; unset (None) keys are left out. With ``redact`` the JWT
    secret shows as ``***`` and so does any password inside a URL."""
    return configfile.render(settings, redact=redact)
