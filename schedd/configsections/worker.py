"""``[worker]``: what a worker runs, how many at once, as whom, and with what
limits."""

from __future__ import annotations

import re
import sys
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from schedd import textrules
from schedd.configfile import SettingError, expand_path
from schedd.configsections.base import Lowered, Section, Unique, env_of, seconds_text, unique
from schedd.executors.netpolicy import check_allow_entry

ExecutorType = Literal["shell", "python", "http", "function"]
EXECUTOR_TYPES: tuple[ExecutorType, ...] = ("shell", "python", "http", "function")
# ``user`` or ``user:group``: names or numbers, as the task field accepts them.
RUN_AS_PATTERN = re.compile(textrules.RUN_AS_PATTERN)
# Variables that carry the daemon's secrets: never passed through to tasks.
DAEMON_SECRETS = frozenset({"DATABASE_URL", "JWT_SECRET", "RABBITMQ_URL", "REDIS_URL"})


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
        return unique([check_allow_entry(entry) for entry in value])

    @field_validator("task_types")
    @classmethod
    def _task_types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty (leave it out to serve the executor types)")
        if any(not item.strip() for item in value):
            raise ValueError("must not contain an empty name")
        return unique([item.strip() for item in value])

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
