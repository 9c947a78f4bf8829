"""The choices flags offer: task and run enums and the API scopes.

They repeat the values of ``schedd.models`` and ``schedd.schemas`` so that parsing a
command line does not import SQLModel and SQLAlchemy (most of a second at every start
in HTTP mode); a unit test fails when the two lists differ.
"""

from __future__ import annotations

from enum import StrEnum


class Executor(StrEnum):
    shell = "shell"
    python = "python"
    http = "http"
    function = "function"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"


class TaskStatus(StrEnum):
    active = "active"
    paused = "paused"


class ConcurrencyPolicy(StrEnum):
    allow = "allow"
    forbid = "forbid"
    replace = "replace"  # type: ignore[assignment]  # shadows str.replace; the value is the contract


class MisfirePolicy(StrEnum):
    fire_once = "fire_once"
    skip = "skip"
    fire_all = "fire_all"


class RunStatus(StrEnum):
    waiting = "waiting"
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    timeout = "timeout"
    cancelled = "cancelled"
    lost = "lost"
    skipped = "skipped"


class WorkerStatus(StrEnum):
    active = "active"
    draining = "draining"
    offline = "offline"


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
