"""API request and response models, shared by the HTTP API and `schedctl --db`.

Request models forbid unknown fields, so a misspelt field is an error that names it
instead of a silently ignored value.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schedd.bounds import (
    ARGUMENTS_DOC,
    MAX_ARGUMENTS,
    METADATA_DOC,
    check_arguments,
    check_metadata,
)
from schedd.errors import InvalidInput
from schedd.models import (
    ConcurrencyPolicy,
    Executor,
    MisfirePolicy,
    Priority,
    Task,
    TaskStatus,
)
from schedd.textrules import (
    ENV_NAME_PATTERN,
    NAME_PATTERN,
    RUN_AS_PATTERN,
    TAG_PATTERN,
    WORKING_DIR_PATTERN,
    check_name,
    matches,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_COMMAND = 65_536

MAX_TIMEOUT = 7 * 24 * 3600
MAX_RETRIES = 100
MAX_RETRY_DELAY = 24 * 3600.0


class Page(BaseModel, Generic[T]):
    """One page of a list: the seed's list shape."""

    items: list[T]
    total: int
    page: int
    size: int


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


def _published(**keywords: Any) -> Any:
    """JSON Schema keywords for the OpenAPI document that a validator of the model
    enforces (with a message in words), from the same rule."""
    return Field(json_schema_extra=keywords)


MAX_ID = 2_147_483_647  # ids are 32-bit integers in PostgreSQL
MAX_TAG = 64
Tag = Annotated[str, _published(pattern=TAG_PATTERN, minLength=1, maxLength=MAX_TAG)]


def _json_number(value: Any, kind: str = "an integer") -> Any:
    # Pydantic would take true as 1 and "5" as 5: the schema says number.
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"must be {kind} (a JSON number), not {type(value).__name__}")
    return value


INTEGERS = frozenset(
    {"retry_count", "timeout_seconds", "memory_max_mb", "pids_max", "current_task_count"}
    | {"ttl_seconds"}
)
NUMBERS = (
    "retry_count",
    "retry_delay_seconds",
    "timeout_seconds",
    "memory_max_mb",
    "cpu_max",
    "pids_max",
    "current_task_count",
    "load_average",
    "memory_usage",
    "cpu_usage",
    "ttl_seconds",
)


def _json_numbers(value: Any, info: ValidationInfo) -> Any:
    """Numbers as JSON Schema has them (3.0 is an integer, true and "3" are no
    numbers), for a field_validator(mode="before") of the NUMBERS of a model."""
    if value is None:
        return None
    return _json_number(value, "an integer" if info.field_name in INTEGERS else "a number")


TaskId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_json_number)]


def _iso_datetime(value: Any) -> Any:
    # Pydantic reads a number (or a numeric string) as a Unix time: refuse it, the
    # schema says date-time.
    if isinstance(value, str) and re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("expected an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]


def _check_name(value: str) -> str:
    return check_name(value)


def _check_tags(values: list[str]) -> list[str]:
    for tag in values:
        if len(tag) > MAX_TAG or not matches(TAG_PATTERN, tag):
            raise ValueError(
                f"tag {tag!r} must be 1-{MAX_TAG} characters, no comma, newline or outer spaces"
            )
    return list(dict.fromkeys(values))


MAX_MEMORY_MB = 1 << 22  # 4 TiB
MAX_ENV_VARS = 100
MAX_ENV_NAME = 128
MAX_ENV_BYTES = 65_536
ENVIRONMENT_SCHEMA: dict[str, Any] = {
    "maxProperties": MAX_ENV_VARS,
    "propertyNames": {"pattern": ENV_NAME_PATTERN, "maxLength": MAX_ENV_NAME},
}


def _check_environment(values: dict[str, str]) -> dict[str, str]:
    """Names a shell can export, none of the run's own SCHED_*; bounded sizes."""
    if len(values) > MAX_ENV_VARS:
        raise ValueError(f"at most {MAX_ENV_VARS} variables")
    total = 0
    for name, value in values.items():
        if name.startswith("SCHED_"):
            raise ValueError(f"{name}: SCHED_* names are the run's own variables")
        if not matches(ENV_NAME_PATTERN, name) or len(name) > MAX_ENV_NAME:
            raise ValueError(
                f"{name[:40]!r} is not a variable name (letters, digits, _; not starting "
                f"with a digit; at most {MAX_ENV_NAME} characters)"
            )
        if "\0" in value:
            raise ValueError(f"{name}: the value contains a NUL character")
        total += len(name.encode()) + len(value.encode()) + 2
    if total > MAX_ENV_BYTES:
        raise ValueError(f"names and values take more than {MAX_ENV_BYTES} bytes")
    return values


def _check_working_dir(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    if not matches(WORKING_DIR_PATTERN, value):
        raise ValueError("must be a plain absolute path (no NUL or newline, no . or .. parts)")
    return value


NOTIFY_DOC = (
    "Alert rules: event (failed, recovered, succeeded, missed, long_running, absent) -> "
    "channel names from the configuration's [notify.channels]; options warn_after_seconds, "
    "expect_every and grace (durations such as '30m', '25h'). Keys left out come from "
    "notify.default; an empty list turns an event off."
)


NOTIFY_KEYS = (
    *("failed", "recovered", "succeeded", "missed", "long_running", "absent"),
    *("warn_after_seconds", "expect_every", "grace"),
)
NOTIFY_SCHEMA: dict[str, Any] = {"propertyNames": {"enum": list(NOTIFY_KEYS)}}


def check_notify(value: dict[str, Any]) -> dict[str, Any]:
    """A task's ``notify`` rules, normalised; ValueError naming the bad key."""
    from schedd.alerts.rules import parse_rules

    return parse_rules(value).stored()


class _TaskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    _numbers = field_validator(*NUMBERS[:6], mode="before", check_fields=False)(_json_numbers)

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value)

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tags(value)

    @field_validator("metadata", check_fields=False)
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_metadata(value)

    @field_validator("arguments", check_fields=False)
    @classmethod
    def _arguments(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_arguments(value)

    @field_validator("environment", check_fields=False)
    @classmethod
    def _environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _check_environment(value)

    @field_validator("run_as", check_fields=False)
    @classmethod
    def _run_as(cls, value: str | None) -> str | None:
        if value is not None and not matches(RUN_AS_PATTERN, value):
            raise ValueError("must be user or user:group (names or numbers)")
        return value

    @field_validator("working_dir", check_fields=False)
    @classmethod
    def _working_dir(cls, value: str | None) -> str | None:
        return None if value is None else _check_working_dir(value)

    @field_validator("notify", check_fields=False)
    @classmethod
    def _notify(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_notify(value)

    @field_validator("dependencies", check_fields=False)
    @classmethod
    def _deps(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else sorted(set(value))


# Fields a task read back from the API carries that a client cannot set: POST accepts
# and ignores them, so a task from GET (or the seed's Task example) can be posted as is.
READ_ONLY_TASK_FIELDS = frozenset(
    {"id", "created_at", "updated_at", "last_run_at", "next_run_at", "warnings"}
)


class TaskCreate(_TaskFields):
    """Body of POST /api/tasks.

    ``executor`` defaults to ``shell`` (as in ``schedctl task create``). The read-only
    fields of a task as GET shows it (:data:`READ_ONLY_TASK_FIELDS`) are accepted and
    ignored; any other unknown field is an error that names it.
    """

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and READ_ONLY_TASK_FIELDS & data.keys():
            return {k: v for k, v in data.items() if k not in READ_ONLY_TASK_FIELDS}
        return data

    name: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": NAME_PATTERN})
    description: str = Field(default="", max_length=10_000)
    task_type: str | None = Field(default=None, min_length=1, max_length=64)
    executor: Executor = Executor.shell
    command: str = Field(min_length=1, max_length=MAX_COMMAND)
    arguments: list[str] = Field(
        default_factory=list, max_length=MAX_ARGUMENTS, description=ARGUMENTS_DOC
    )
    schedule: str | None = Field(default=None, max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    priority: Priority = Priority.normal
    retry_count: int = Field(default=0, ge=0, le=MAX_RETRIES)
    retry_delay_seconds: float = Field(default=10.0, ge=0, le=MAX_RETRY_DELAY)
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT)
    status: TaskStatus = TaskStatus.active
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.allow
    misfire_policy: MisfirePolicy = MisfirePolicy.fire_once
    dependencies: list[TaskId] = Field(default_factory=list, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict, description=METADATA_DOC)
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Variables added to the run's environment (beside the allowlist); "
        f"names and values at most {MAX_ENV_BYTES} bytes together, values without NUL.",
        json_schema_extra=ENVIRONMENT_SCHEMA,
    )
    run_as: str | None = Field(
        default=None,
        max_length=65,
        description="user[:group] runs execute as; one of the worker's allowed_run_as.",
        json_schema_extra={"pattern": RUN_AS_PATTERN},
    )
    working_dir: str | None = Field(
        default=None,
        max_length=4096,
        description="Absolute directory runs start in.",
        json_schema_extra={"pattern": WORKING_DIR_PATTERN},
    )
    memory_max_mb: int | None = Field(
        default=None,
        ge=4,
        le=MAX_MEMORY_MB,
        description="Memory limit of a run (MB).",
    )
    cpu_max: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="CPU limit of a run, in cores (0.5: half).",
    )
    pids_max: int | None = Field(
        default=None,
        ge=1,
        le=4_194_304,
        description="Most processes and threads at once.",
    )
    notify: dict[str, Any] = Field(
        default_factory=dict, description=NOTIFY_DOC, json_schema_extra=NOTIFY_SCHEMA
    )


class TaskUpdate(_TaskFields):
    """Body of PATCH/PUT /api/tasks/{id}: only the fields given change."""

    name: str | None = Field(
        default=None, min_length=1, max_length=200, json_schema_extra={"pattern": NAME_PATTERN}
    )
    description: str | None = Field(default=None, max_length=10_000)
    task_type: str | None = Field(default=None, min_length=1, max_length=64)
    executor: Executor | None = None
    command: str | None = Field(default=None, min_length=1, max_length=MAX_COMMAND)
    arguments: list[str] | None = Field(
        default=None, max_length=MAX_ARGUMENTS, description=ARGUMENTS_DOC
    )
    schedule: str | None = Field(default=None, max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    priority: Priority | None = None
    retry_count: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    retry_delay_seconds: float | None = Field(default=None, ge=0, le=MAX_RETRY_DELAY)
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT)
    status: TaskStatus | None = None
    concurrency_policy: ConcurrencyPolicy | None = None
    misfire_policy: MisfirePolicy | None = None
    dependencies: list[TaskId] | None = Field(default=None, max_length=100)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC)
    environment: dict[str, str] | None = Field(default=None, json_schema_extra=ENVIRONMENT_SCHEMA)
    run_as: str | None = Field(
        default=None, max_length=65, json_schema_extra={"pattern": RUN_AS_PATTERN}
    )
    working_dir: str | None = Field(
        default=None, max_length=4096, json_schema_extra={"pattern": WORKING_DIR_PATTERN}
    )
    memory_max_mb: int | None = Field(default=None, ge=4, le=MAX_MEMORY_MB)
    cpu_max: float | None = Field(default=None, gt=0, le=1024)
    pids_max: int | None = Field(default=None, ge=1, le=4_194_304)
    notify: dict[str, Any] | None = Field(
        default=None, description=NOTIFY_DOC, json_schema_extra=NOTIFY_SCHEMA
    )


class TaskRead(BaseModel):
    """A task as the API shows it (the seed's Task shape plus additions)."""

    id: int
    name: str
    description: str
    task_type: str
    executor: str
    command: str
    arguments: list[str]
    schedule: str | None
    timezone: str
    priority: str
    retry_count: int
    retry_delay_seconds: float
    timeout_seconds: int | None
    status: str
    concurrency_policy: str
    misfire_policy: str
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None
    dependencies: list[int]
    tags: list[str]
    metadata: dict[str, Any]
    environment: dict[str, str]
    run_as: str | None
    working_dir: str | None
    memory_max_mb: int | None = None
    cpu_max: float | None = None
    pids_max: int | None = None
    notify: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, task: Task, dependencies: list[int]) -> TaskRead:
        data = task.model_dump(exclude={"metadata_"})
        return cls(**data, metadata=task.metadata_, dependencies=dependencies)


class TaskCreated(TaskRead):
    """The answer to POST /api/tasks: the task, and what may stop it from running."""

    warnings: list[str] = Field(
        default_factory=list,
        description="Problems found at create time that do not make the task invalid "
        "(a python script that is not there).",
    )


def validated(model: type[M], data: Any) -> M:
    """``model.model_validate(data)``, with errors turned into one InvalidInput.

    The message names the field: ``schedule: cron expression ... out of range``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    message = message.removeprefix("Value error, ")
    return InvalidInput(f"{field}: {message}" if field else message, field=field)


class RunRead(BaseModel):
    """A run as the API shows it (the seed's TaskRun shape plus additions)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    worker_id: str | None
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    result: str | None
    error_message: str | None
    retry_count: int
    exit_code: int | None
    execution_time: float | None
    scheduled_for: datetime | None
    trigger: str
    created_at: datetime
    task_type: str
    priority: int
    arguments: list[str] | None
    not_before: datetime | None
    cancel_requested: bool
    parent_run_id: int | None
    output_bytes: int
    cpu_seconds: float | None = None  # CPU time the run used (user + system)
    max_rss_mb: float | None = None  # its peak memory
    # The W3C traceparent of the span that created the run (not shown: for the message).
    _trace_context: str | None = PrivateAttr(default=None)


class WorkerRead(BaseModel):
    """A worker as the API shows it (the seed's Worker shape plus additions)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    hostname: str
    ip_address: str | None
    port: int | None
    task_types: list[str]
    max_concurrent_tasks: int
    current_task_count: int
    status: str
    last_heartbeat: datetime | None
    registered_at: datetime
    load_average: float | None
    memory_usage: float | None
    cpu_usage: float | None
    executor_types: list[str]
    pid: int | None
    version: str | None
    isolation: str | None = None  # cgroup2 | hybrid (a cgroup per run) | none


class HeartbeatIn(BaseModel):
    """Body of POST /api/workers/{id}/heartbeat (the seed's fields)."""

    model_config = ConfigDict(extra="forbid")

    _numbers = field_validator(*NUMBERS[6:10], mode="before")(_json_numbers)

    current_task_count: int = Field(default=0, ge=0, le=100_000)
    load_average: float | None = Field(default=None, ge=0)
    memory_usage: float | None = Field(default=None, ge=0)
    cpu_usage: float | None = Field(default=None, ge=0, le=100_000)


# --- HTTP API: auth, system, runs ----------------------------------------------------
# Request bodies forbid unknown fields like the task bodies above.

SCOPES = (
    "task.read",
    "task.write",
    "task.execute",
    "task.delete",
    "worker.read",
    "worker.write",
    "system.read",
    "system.write",
)
Scope = Annotated[str, _published(enum=list(SCOPES))]


class TriggerIn(BaseModel):
    """Optional body of POST /api/tasks/{id}/trigger: a per-run argument override."""

    model_config = ConfigDict(extra="forbid")

    arguments: list[str] | None = Field(
        default=None, max_length=MAX_ARGUMENTS, description=ARGUMENTS_DOC
    )

    @field_validator("arguments")
    @classmethod
    def _arguments(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_arguments(value)


class ApiKeyCreate(BaseModel):
    """Body of POST /api/apikeys. Scopes default to none; at most the caller's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=list, max_length=len(SCOPES))
    expires_at: IsoDateTime | None = None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        return check_scopes(value)


class ApiKeyRead(BaseModel):
    """An API key as lists show it: never the key, only its first characters."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """The response that creates a key: the only time the key itself is shown."""

    key: str


class TokenCreate(BaseModel):
    """Body of POST /api/tokens. Scopes default to all of the caller's."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] | None = Field(default=None, max_length=len(SCOPES))
    _numbers = field_validator("ttl_seconds", mode="before")(_json_numbers)

    # The maximum published is auth.token_ttl_seconds (schedd/api/openapi.py).
    ttl_seconds: int | None = Field(default=None, ge=1, le=31_536_000)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_scopes(value)


class TokenRead(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_at: datetime
    scopes: list[str]


class WhoAmI(BaseModel):
    actor: str
    kind: str  # "api_key" or "token"
    key_id: int
    key_name: str
    scopes: list[str]
    expires_at: datetime | None


def check_scopes(values: list[str]) -> list[str]:
    unknown = [s for s in values if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r} (expected any of {', '.join(SCOPES)})")
    return [s for s in SCOPES if s in values]  # canonical order, no repeats


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


class SystemLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    level: str
    component: str
    message: str
    refs: dict[str, Any]


class RunCounts(BaseModel):
    total: int
    by_status: dict[str, int]
    success_rate: float | None  # completed / ended (skipped and cancelled excluded)
    throughput_per_minute: float  # ended runs per minute


class StatsRead(BaseModel):
    """GET /api/system/stats. Run windows count runs created in the last hour/day."""

    version: str
    uptime_seconds: float
    time: datetime
    tasks: dict[str, int]
    runs_last_hour: RunCounts
    runs_last_day: RunCounts
    workers: dict[str, int]
    queue_depth: int  # pending runs: the backlog waiting for a worker
    oldest_pending_seconds: float | None = None  # age of the oldest pending run


class HealthRead(BaseModel):
    status: str  # ok | degraded | unavailable
    database: str  # ok | unavailable
    broker: str  # ok | unavailable | none
    version: str
    # The backlog: pending runs and the age of the oldest (None when the database
    # did not answer).
    pending_runs: int | None = None
    oldest_pending_seconds: float | None = None
    # Active workers by how they isolate runs: cgroup2, hybrid (a cgroup per run) or
    # none (process groups); absent when the database does not answer.
    isolation: dict[str, int] | None = None
    # This process's host clock minus the database's (the scheduler fires by the
    # database's; each scheduler exports its own as scheduler_clock_skew_seconds).
    clock_skew_seconds: float | None = None


class OutputRead(BaseModel):
    """A slice of a run's output; read again from ``next_offset`` to follow it."""

    data: str
    offset: int
    next_offset: int
    finished: bool


class FireTimes(BaseModel):
    times: list[datetime]


class ChannelRead(BaseModel):
    """A notification channel as configured; its URL shows scheme and host only."""

    name: str
    type: str
    target: str
    timeout_seconds: float
    secrets: dict[str, bool] = Field(
        default_factory=dict, description="Environment variables it reads, and whether set."
    )


class DeliveryRead(BaseModel):
    """One alert (or digest) for one channel, and how sending it went."""

    id: int
    channel: str
    state: str
    event: str
    event_id: int | None
    task_id: int | None
    task_name: str | None
    run_id: int | None
    subject: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    digest_id: int | None
    digest_count: int


class ChannelTestRead(BaseModel):
    """The answer to a test message: it was delivered (a failure is an error)."""

    channel: str
    delivered: bool
    subject: str
