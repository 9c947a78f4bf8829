"""Exit codes: one per outcome, mapped once from the error hierarchy, all documented."""

from __future__ import annotations

from enum import Enum

import pytest

from schedctl import choices, exits
from schedctl.client import NotSupported, RateLimited, ServerError, ServerUnreachable
from schedctl.exits import ExitStatus, WaitTimedOut
from schedd import models, schemas
from schedd.cronfields import CronError
from schedd.db import SchemaBehind
from schedd.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedError,
    Unauthorized,
    Unavailable,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("x"), ExitStatus.NOT_FOUND),
        (Unauthorized("x"), ExitStatus.UNAUTHORIZED),
        (Forbidden("x"), ExitStatus.FORBIDDEN),
        (Conflict("x"), ExitStatus.CONFLICT),
        (RateLimited("x", 5), ExitStatus.RATE_LIMITED),
        (InvalidInput("x"), ExitStatus.INVALID_INPUT),
        (CronError("bad cron"), ExitStatus.INVALID_INPUT),
        (Unavailable("x"), ExitStatus.UNAVAILABLE),
        (ServerUnreachable("x"), ExitStatus.UNAVAILABLE),
        (SchemaBehind("x"), ExitStatus.UNAVAILABLE),
        (ConfigError("f.toml", "api.port", "bad"), ExitStatus.CONFIG),
        (NotSupported("x"), ExitStatus.USAGE),
        (ServerError("x"), ExitStatus.INTERNAL),
        (WaitTimedOut("x"), ExitStatus.TIMEOUT),
        (SchedError("x"), ExitStatus.ERROR),
        (RuntimeError("bug"), ExitStatus.INTERNAL),
    ],
)
def test_each_error_maps_to_its_named_exit_status(error: BaseException, status: int) -> None:
    assert exits.for_error(error) == status


def test_every_exit_status_is_documented_and_distinct() -> None:
    assert set(exits.DESCRIPTIONS) == set(ExitStatus)
    assert len({int(s) for s in ExitStatus}) == len(ExitStatus)


@pytest.mark.parametrize(
    ("run", "code"),
    [
        ({"status": "completed", "exit_code": 0}, 0),
        ({"status": "failed", "exit_code": 3}, 3),
        ({"status": "failed", "exit_code": 137}, 137),
        ({"status": "failed", "exit_code": -9}, 137),
        ({"status": "failed", "exit_code": None}, ExitStatus.ERROR),
        ({"status": "completed", "exit_code": None}, 0),
        ({"status": "timeout", "exit_code": 143}, 124),
        ({"status": "cancelled", "exit_code": None}, 125),
        ({"status": "lost", "exit_code": None}, 75),
        ({"status": "skipped", "exit_code": None}, ExitStatus.CONFLICT),
    ],
)
def test_waited_run_exits_with_its_own_code_or_a_named_one(run: dict, code: int) -> None:
    assert exits.for_run(run) == code


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        (choices.Executor, models.Executor),
        (choices.Priority, models.Priority),
        (choices.TaskStatus, models.TaskStatus),
        (choices.ConcurrencyPolicy, models.ConcurrencyPolicy),
        (choices.MisfirePolicy, models.MisfirePolicy),
        (choices.RunStatus, models.RunStatus),
        (choices.WorkerStatus, models.WorkerStatus),
    ],
)
def test_flag_choices_are_the_models_values(mine: type[Enum], theirs: type[Enum]) -> None:
    assert [m.value for m in mine] == [t.value for t in theirs]


def test_scope_choices_are_the_api_scopes() -> None:
    assert choices.SCOPES == schemas.SCOPES
