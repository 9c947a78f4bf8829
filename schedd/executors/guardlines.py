"""The guard's protocol values: what the worker tells its guard process about runs
and the database, as JSON lines (see :mod:`schedd.executors.guardproc`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


def json_line(kind: str, value: Any) -> str:
    # ASCII JSON never holds a raw newline: one message, one line.
    return kind + json.dumps(dataclasses.asdict(value), separators=(",", ":")) + "\n"


def from_json(cls: Any, value: bytes) -> Any:
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: item for key, item in data.items() if key in names})


@dataclass(frozen=True)
class DatabaseAccess:
    """What the guard needs to write outcomes: the worker's database and its bounds."""

    url: str  # with its password: sent over the pipe only, never logged
    connection_timeout: float
    idle_in_transaction_session_timeout: float
    lock_timeout: float
    statement_timeout: float
    application_name: str
    give_up_seconds: float  # after the worker died, how long to retry a failing database

    def line(self) -> str:
        return json_line("d", self)


@dataclass(frozen=True)
class RunBinding:
    """Which run (and claim) a registered process group belongs to."""

    run_id: int
    claim: int
    worker_id: str


@dataclass(frozen=True)
class HeldOutcome:
    """A run's end as the worker's report writes it, fenced by the same claim."""

    run_id: int
    worker_id: str
    claim: int
    status: str  # completed, failed, timeout, cancelled
    exit_code: int | None
    execution_time: float
    error_message: str | None
    result: str | None
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None

    def line(self) -> str:
        return json_line("o", self)
