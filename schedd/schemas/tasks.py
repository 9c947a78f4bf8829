"""Task request and response models: POST/PATCH bodies with their field rules, the
task as read back, and a trigger's body."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from schedd.bounds import (
    ARGUMENTS_DOC,
    MAX_ARGUMENTS,
    METADATA_DOC,
    check_arguments,
    check_metadata,
)
from schedd.models import (
    ConcurrencyPolicy,
    Executor,
    MisfirePolicy,
    Priority,
    Task,
    TaskStatus,
)
from schedd.schemas.common import MAX_ID, NUMBERS, json_number, json_numbers, published
from schedd.textrules import (
    ENV_NAME_PATTERN,
    NAME_PATTERN,
    RUN_AS_PATTERN,
    TAG_PATTERN,
    WORKING_DIR_PATTERN,
    check_name,
    matches,
)

MAX_COMMAND = 65_536

MAX_TIMEOUT = 7 * 24 * 3600
MAX_RETRIES = 100
MAX_RETRY_DELAY = 24 * 3600.0

MAX_TAG = 64
Tag = Annotated[str, published(pattern=TAG_PATTERN, minLength=1, maxLength=MAX_TAG)]
TaskId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(json_number)]


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

    _numbers = field_validator(*NUMBERS[:6], mode="before", check_fields=False)(json_numbers)

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


class FireTimes(BaseModel):
    times: list[datetime]
