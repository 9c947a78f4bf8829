"""The sections of the configuration: one pydantic model per TOML table.

Each model checks its own values (types, ranges, URL schemes, time zones, level
directives); :mod:`schedd.config` puts them together in ``Settings`` and loads them.
``etc/schedd.toml`` documents every key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schedd import configfile, textrules
from schedd.configfile import (
    SettingError,
    default_data_dir,
    expand_path,
)
from schedd.executors.netpolicy import check_allow_entry
from schedd.logs import parse_directives

ExecutorType = Literal["shell", "python", "http", "function"]
Role = Literal["api", "scheduler", "worker"]
EXECUTOR_TYPES: tuple[ExecutorType, ...] = ("shell", "python", "http", "function")
ROLES: tuple[Role, ...] = ("api", "scheduler", "worker")

DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgres")
BROKER_SCHEMES = {"rabbitmq": ("amqp", "amqps"), "redis": ("redis", "rediss", "unix")}

# The seed's variables, in the order they are applied (a later one wins). RABBITMQ_URL
# and REDIS_URL are applied separately: each only when it names the chosen broker.
SEED_VARIABLES: dict[str, str] = {
    "DATABASE_URL": "database.url",
    "DATABASE_MAX_CONNECTIONS": "database.max_connections",
    "API_HOST": "api.host",
    "API_PORT": "api.port",
    "JWT_SECRET": "auth.jwt_secret",
    "LOG_FORMAT": "observability.log_format",
    "LOG_LEVEL": "observability.log_level",
    "SCHEDD_LOG": "observability.log_level",
}
BROKER_VARIABLES = {"rabbitmq": "RABBITMQ_URL", "redis": "REDIS_URL"}
# ``user`` or ``user:group``: names or numbers, as the task field accepts them.
RUN_AS_PATTERN = re.compile(textrules.RUN_AS_PATTERN)
# Variables that carry the daemon's secrets: never passed through to tasks.
DAEMON_SECRETS = frozenset({"DATABASE_URL", "JWT_SECRET", "RABBITMQ_URL", "REDIS_URL"})

MIN_JWT_SECRET_BYTES = 32
# How to make one, for the errors that ask for a secret.
JWT_SECRET_HINT = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def env_of(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context
    if isinstance(context, dict) and "env" in context:
        env: Mapping[str, str] = context["env"]
        return env
    return os.environ


def _scheme(url: str) -> str:
    """The URL's scheme, lower case; ValueError when ``url`` is not a URL."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"not a URL: {configfile.show(url)}")
    return scheme.lower()


def seconds_text(value: float) -> str:
    return f"{value:g}s"


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# Choices are matched case-insensitively; repeated list items are dropped.
Lowered = BeforeValidator(_lower)
Unique = AfterValidator(_unique)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1; in a config file that is a mistake, not a number.
        if isinstance(value, bool) and info.field_name:
            types = set(configfile.type_parts(cls.model_fields[info.field_name].annotation))
            if bool not in types and types & {int, float}:
                kind = "an integer" if int in types else "a number"
                raise ValueError(f"expected {kind}, got {configfile.show(value)}")
        return value


def default_database_url(data_dir: str | Path) -> str:
    """The embedded database: ``sqlite:///<data_dir>/sched.db``."""
    return f"sqlite:///{Path(data_dir) / 'sched.db'}"


class DatabaseSettings(Section):
    url: str
    max_connections: int = Field(10, ge=1, le=1000)
    connection_timeout: float = Field(30.0, gt=0, le=3600)
    # PostgreSQL only, on the roles' connections (schedd.db.SessionLimits); 0 is off.
    idle_in_transaction_session_timeout: float = Field(10.0, ge=0, le=86_400)
    lock_timeout: float = Field(10.0, ge=0, le=86_400)
    statement_timeout: float = Field(120.0, ge=0, le=86_400)

    @field_validator("url")
    @classmethod
    def _supported_scheme(cls, url: str) -> str:
        scheme = _scheme(url)
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported scheme '{scheme}' (expected sqlite or postgresql)")
        # Imported here: schedctl loads settings without otherwise needing SQLAlchemy.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except (ArgumentError, ValueError):
            # SQLAlchemy's message may quote the URL, password included.
            raise ValueError(
                f"cannot parse {configfile.show(url)} (check the port and percent-encoding)"
            ) from None
        return url

    @property
    def is_sqlite(self) -> bool:
        return _scheme(self.url).startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        """``url`` with ``postgres://`` and ``postgresql://`` pinned to psycopg 3."""
        scheme, _, rest = self.url.partition("://")
        if scheme.lower() in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        return self.url


NAMESPACE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def default_namespace(database_url: str) -> str:
    """The broker namespace of a deployment whose database is ``database_url``.

    PostgreSQL: the database's name (``sched`` keeps the names of earlier versions), so
    every process of a deployment agrees however it reaches the server. SQLite: the
    file's name and a hash of its resolved path (two embedded deployments on one host
    both call theirs sched.db). Characters a name cannot hold become ``_``.
    """
    import hashlib

    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = url.database or ""
    if url.get_backend_name() == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            return "sched"
        path = Path(name).expanduser().resolve()
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        name = f"{path.stem}-{digest}"
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]
    return cleaned or "sched"


class MessageQueueSettings(Section):
    type: Annotated[Literal["database", "rabbitmq", "redis"], Lowered] = "database"
    url: str = ""
    claim_idle_seconds: float = Field(30.0, ge=1, le=86_400)
    # Prefix of every queue, stream and consumer group; "" derives it from the database.
    namespace: str = ""

    @field_validator("namespace")
    @classmethod
    def _usable_namespace(cls, value: str) -> str:
        if value and not re.match(NAMESPACE_PATTERN, value):
            raise ValueError(
                f"not a namespace: {value!r} (1-64 letters, digits, '_' or '-'; "
                "empty derives it from the database)"
            )
        return value

    @model_validator(mode="after")
    def _url_fits_type(self) -> Self:
        # With the database broker the URL is ignored, so switching type back to
        # "database" (for instance by SCHEDD_MESSAGE_QUEUE__TYPE) needs no other edit.
        # A missing URL is the roles' requirement, not the value's: schedd.preflight
        # refuses it before a start (and `schedd migrate` or schedctl need no broker).
        if self.type == "database" or not self.url:
            return self
        allowed = BROKER_SCHEMES[self.type]
        try:
            scheme = _scheme(self.url)
        except ValueError as exc:
            raise SettingError(str(exc), "url") from None
        if scheme not in allowed:
            raise SettingError(
                f"unsupported scheme '{scheme}' for type '{self.type}'"
                f" (expected {', '.join(allowed[:-1])} or {allowed[-1]})",
                "url",
                "type",
            )
        return self


class ApiSettings(Section):
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] | None = None
    auth_failures_per_minute: int = Field(30, ge=1, le=1_000_000)
    ui_enabled: bool = True
    processes: int = Field(1, ge=1, le=64)  # HTTP server processes on the one port

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is not None and any(not h.strip() or "/" in h or " " in h for h in hosts):
            raise ValueError('entries must be host names or addresses (or "*" for any)')
        return hosts

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            # Browsers send the origin without a path, and the match is exact, so
            # "http://host/" would never match: refuse it instead of ignoring it.
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or (parts.query or parts.fragment)
            ):
                raise ValueError(
                    f"not an origin: {origin!r} (expected '*' or scheme://host[:port],"
                    " e.g. 'http://localhost:3000')"
                )
        return origins


class SchedulerSettings(Section):
    max_workers: int = Field(50, ge=1, le=100_000)
    scheduling_interval: float = Field(5.0, ge=0.05, le=3600)
    task_timeout: int = Field(3600, ge=1, le=604_800)
    misfire_grace_seconds: float = Field(60.0, ge=0, le=604_800)
    max_catchup: int = Field(100, ge=1, le=100_000)
    heartbeat_timeout: Annotated[float, Field(gt=0, le=86_400)] | None = None
    batch_size: int = Field(500, ge=1, le=100_000)
    redispatch_after: float = Field(30.0, gt=0, le=86_400)
    retry_delay_max: float = Field(3600.0, ge=0, le=604_800)
    default_timezone: str = "UTC"
    reap_interval: float = Field(5.0, ge=0.05, le=3600)
    max_clock_skew_seconds: float = Field(2.0, gt=0, le=86_400)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (expected an IANA name like 'Europe/Berlin')"
            ) from None
        return name


class WorkerSettings(Section):
    id: str | None = None
    heartbeat_interval: float = Field(30.0, ge=0.05, le=3600)
    max_concurrent_tasks: int = Field(5, ge=1, le=10_000)
    executor_types: Annotated[list[ExecutorType], Unique] = Field(
        default_factory=lambda: list(EXECUTOR_TYPES), min_length=1
    )
    task_types: list[str] | None = None
    python_interpreter: str = Field(
        default_factory=lambda: sys.executable or "python3", min_length=1
    )
    working_directory: str | None = None
    max_output_bytes: int = Field(1_048_576, ge=1, le=1 << 30)
    kill_grace_seconds: float = Field(5.0, ge=0, le=3600)
    drain_grace_seconds: float = Field(30.0, ge=0, le=86_400)
    fence_seconds: Annotated[float, Field(gt=0, le=86_400)] | None = None
    http_allow: list[str] = Field(default_factory=list, max_length=1000)
    env_passthrough: Annotated[list[str], Unique] = Field(default_factory=list)
    cgroups: Annotated[Literal["auto", "off"], Lowered] = "auto"
    cgroup_root: str | None = None
    run_as: str | None = None
    allowed_run_as: Annotated[list[str], Unique] = Field(default_factory=list)
    function_pool_size: int | None = Field(None, ge=1, le=1024)
    max_runs_per_process: int = Field(1000, ge=1, le=100_000_000)

    @field_validator("cgroup_root")
    @classmethod
    def _cgroup_root(cls, value: str | None) -> str | None:
        if value is not None and (not value or "\0" in value or ".." in value.split("/")):
            raise ValueError("must be a cgroup directory (v2) or a tree name (hybrid), no '..'")
        return value

    @field_validator("run_as")
    @classmethod
    def _user_spec(cls, value: str | None) -> str | None:
        if value is not None and not RUN_AS_PATTERN.search(value):
            raise ValueError(f"{value!r} is not user or user:group")
        return value

    @field_validator("allowed_run_as")
    @classmethod
    def _user_specs(cls, value: list[str]) -> list[str]:
        for item in value:
            if not RUN_AS_PATTERN.search(item):
                raise ValueError(f"{item!r} is not user or user:group")
        return value

    @field_validator("env_passthrough")
    @classmethod
    def _passable_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name in DAEMON_SECRETS or name.startswith(("SCHEDD_", "SCHED_")):
                raise ValueError(f"{name} is the daemon's own and never passes to tasks")
        return value

    @field_validator("id")
    @classmethod
    def _usable_id(cls, value: str | None) -> str | None:
        # The id appears in API paths (/api/workers/{id}) and log lines.
        if value is not None and (not value or any(c.isspace() or c == "/" for c in value)):
            raise ValueError(f"must be non-empty, without spaces or '/', got {value!r}")
        return value

    @field_validator("http_allow")
    @classmethod
    def _http_allow(cls, value: list[str]) -> list[str]:
        return _unique([check_allow_entry(entry) for entry in value])

    @field_validator("task_types")
    @classmethod
    def _task_types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty (leave it out to serve the executor types)")
        if any(not item.strip() for item in value):
            raise ValueError("must not contain an empty name")
        return _unique([item.strip() for item in value])

    @field_validator("working_directory")
    @classmethod
    def _expand_directory(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else expand_path(value, env_of(info))

    @model_validator(mode="after")
    def _fence_outlasts_heartbeat(self) -> Self:
        if self.fence_seconds is not None and self.fence_seconds <= self.heartbeat_interval:
            raise SettingError(
                f"worker.fence_seconds ({seconds_text(self.fence_seconds)}) must be longer than"
                f" worker.heartbeat_interval ({seconds_text(self.heartbeat_interval)}), or the"
                " worker stops its runs between two normal heartbeats",
                "fence_seconds",
                "heartbeat_interval",
            )
        return self

    @property
    def effective_fence_seconds(self) -> float:
        """How long the worker goes without a heartbeat before it stops its runs."""
        if self.fence_seconds is not None:
            return self.fence_seconds
        return 2 * self.heartbeat_interval

    @property
    def effective_function_pool_size(self) -> int:
        """Pool processes for function runs: as many as runs may execute at once."""
        if self.function_pool_size is not None:
            return self.function_pool_size
        return self.max_concurrent_tasks

    @property
    def effective_task_types(self) -> list[str]:
        if self.task_types is not None:
            return list(self.task_types)
        return list(self.executor_types)


class ObservabilitySettings(Section):
    metrics_enabled: bool = True
    tracing_enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318"
    log_level: str = "info"
    log_format: Annotated[Literal["text", "json"], Lowered] = "text"
    metrics_auth: bool = False
    metrics_listen: str = ""
    events_level: Annotated[Literal["debug", "info", "warning", "error"], Lowered] = "info"

    @field_validator("log_level")
    @classmethod
    def _valid_directives(cls, value: str) -> str:
        parse_directives(value)  # the parser the log setup uses, so both accept the same
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _valid_otlp_endpoint(cls, value: str) -> str:
        value = value.strip()
        scheme, _, rest = value.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError(
                f"not an http(s) URL: {value!r} (an OTLP/HTTP collector, e.g. "
                "'http://127.0.0.1:4318'; spans go to its /v1/traces)"
            )
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        value = value.strip()
        if value:
            cls.listen_address(value)
        return value

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of this process's own metrics listener; None when it is off."""
        return self.listen_address(self.metrics_listen) if self.metrics_listen else None

    @staticmethod
    def listen_address(value: str) -> tuple[str, int]:
        """(host, port) from "host:port", "[ipv6]:port" or ":port" (every IPv4
        address); ValueError naming what is wrong."""
        expected = "expected host:port, [ipv6]:port or :port, e.g. '127.0.0.1:9464'"
        if "/" in value or not re.fullmatch(r".*:[^:\]]*", value):
            raise ValueError(f"not an address with a port: {value!r} ({expected})")
        host, _, port_text = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            try:
                host = str(ipaddress.IPv6Address(host[1:-1]))
            except ValueError:
                raise ValueError(f"not an IPv6 address: {host!r} ({expected})") from None
        elif ":" in host or "[" in host or "]" in host:
            raise ValueError(f"an IPv6 address goes in brackets: {value!r} ({expected})")
        elif not host:
            host = "0.0.0.0"  # ":port": every IPv4 interface
        elif re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError(f"not an IPv4 address: {host!r} ({expected})") from None
        elif not re.fullmatch(
            r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*", host
        ):
            raise ValueError(f"not a host name: {host!r} ({expected})")
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port must be 1-65535, got {port_text!r} ({expected})")
        return host, int(port_text)


class AuthSettings(Section):
    jwt_secret: SecretStr | None = None
    token_ttl_seconds: int = Field(3600, ge=1, le=31_536_000)

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # DESIGN section 8: HS256 secrets of at least 32 bytes. Refused here so a weak
        # secret stops the start with the file/variable that held it.
        if value is not None:
            size = len(value.get_secret_value().encode())
            if size < MIN_JWT_SECRET_BYTES:
                raise ValueError(
                    f"must be at least {MIN_JWT_SECRET_BYTES} bytes, got {size} ({JWT_SECRET_HINT})"
                )
        return value


class RetentionSettings(Section):
    runs_days: float = Field(30.0, ge=0, le=36_500)
    system_logs_days: float = Field(14.0, ge=0, le=36_500)
    audit_days: float = Field(90.0, ge=0, le=36_500)


class DaemonSettings(Section):
    data_dir: str = Field(default_factory=lambda: str(default_data_dir(os.environ)))
    roles: Annotated[list[Role], Unique] = Field(default_factory=lambda: list(ROLES), min_length=1)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return expand_path(value, env_of(info))


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ChannelType = Literal["webhook", "slack", "email", "command"]
# The keys each channel type uses beside type and timeout_seconds.
CHANNEL_KEYS: dict[str, frozenset[str]] = {
    "webhook": frozenset({"url", "url_env", "secret_env"}),
    "slack": frozenset({"url", "url_env"}),
    "email": frozenset(
        {
            "smtp_host",
            "smtp_port",
            "security",
            "username",
            "password_env",
            "sender",
            "to",
            "ca_file",
        }
    ),
    "command": frozenset({"command"}),
}


class ChannelSettings(Section):
    """One ``[notify.channels.NAME]`` table. Secrets are never values here: the
    ``*_env`` keys name the environment variables that hold them."""

    type: Annotated[ChannelType, Lowered]
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    security: Annotated[Literal["starttls", "tls", "none"], Lowered] = "starttls"
    username: str | None = None
    password_env: str | None = None
    sender: str | None = None
    to: list[str] = Field(default_factory=list, max_length=100)
    ca_file: str | None = None
    command: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("url_env", "secret_env", "password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_channel_url(value)
        return value

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        used = CHANNEL_KEYS[self.type]
        for key in sorted(set().union(*CHANNEL_KEYS.values()) - used):
            if key in self.model_fields_set:
                raise SettingError(f"is not used by {self.type} channels", key)
        if self.type in ("webhook", "slack") and (self.url is None) == (self.url_env is None):
            raise SettingError(
                f"a {self.type} channel needs url or url_env (one of them)", "url", "url_env"
            )
        if self.type == "email":
            if not self.smtp_host:
                raise SettingError("an email channel needs smtp_host", "smtp_host")
            if not self.sender or not self.to:
                raise SettingError("an email channel needs sender and to", "sender", "to")
            if (self.username is None) != (self.password_env is None):
                raise SettingError(
                    "username and password_env go together", "username", "password_env"
                )
        if self.type == "command" and not self.command:
            raise SettingError(
                'a command channel needs command (a program and its arguments: ["/path", ...])',
                "command",
            )
        return self


def check_channel_url(url: str) -> str:
    """``url`` if it is an http(s) URL without user information, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {configfile.show(url)}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL carries user information (user:password@); not allowed")
    return url


class NotifySettings(Section):
    """``[notify]``: channels, default rules, and how deliveries are paced."""

    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    default: dict[str, Any] = Field(default_factory=dict)
    max_per_minute: int = Field(10, ge=1, le=10_000)
    check_interval: float = Field(5.0, ge=0.05, le=3600)
    retry_initial_seconds: float = Field(10.0, ge=0.05, le=3600)
    retry_max_seconds: float = Field(600.0, ge=0.05, le=86_400)
    give_up_after_seconds: float = Field(86_400.0, ge=1, le=30 * 86_400)
    output_lines: int = Field(20, ge=0, le=500)
    http_allow: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        from schedd.alerts.rules import CHANNEL_NAME

        for name in value:
            if not CHANNEL_NAME.match(name):
                raise ValueError(f"{name!r} is not a channel name (letters, digits, . _ -)")
        return value

    @field_validator("http_allow")
    @classmethod
    def _http_allow(cls, value: list[str]) -> list[str]:
        return _unique([check_allow_entry(entry) for entry in value])

    @model_validator(mode="after")
    def _rules_name_channels(self) -> Self:
        from schedd.alerts.rules import parse_rules

        try:
            rules = parse_rules(self.default)
        except ValueError as exc:
            raise SettingError(str(exc), "default") from None
        unknown = sorted(rules.channel_names() - self.channels.keys())
        if unknown:
            raise SettingError(f"names a channel that is not configured: {unknown[0]}", "default")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise SettingError(
                "retry_max_seconds must be at least retry_initial_seconds",
                "retry_max_seconds",
                "retry_initial_seconds",
            )
        return self
