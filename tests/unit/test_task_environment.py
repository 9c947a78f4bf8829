"""A task's own environment table: names a shell can export, bounded, not SCHED_*."""

from __future__ import annotations

import pytest

from schedd.errors import InvalidInput
from schedd.schemas import MAX_ENV_VARS, TaskCreate, TaskUpdate, validated


def body(environment: object) -> dict[str, object]:
    return {"name": "t", "executor": "shell", "command": "env", "environment": environment}


def test_a_valid_table_is_kept() -> None:
    task = validated(TaskCreate, body({"REPORT_DIR": "/srv", "_x1": ""}))
    assert task.environment == {"REPORT_DIR": "/srv", "_x1": ""}


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"1ABC": "x"}, "not a variable name"),
        ({"A-B": "x"}, "not a variable name"),
        ({"A B": "x"}, "not a variable name"),
        ({"": "x"}, "not a variable name"),
        ({"X" * 129: "x"}, "not a variable name"),
        ({"SCHED_RUN_ID": "1"}, "SCHED_"),
        ({"A": "a\0b"}, "NUL"),
        ({"A": "x" * 70_000}, "bytes"),
        ({f"V{i}": "" for i in range(MAX_ENV_VARS + 1)}, "at most"),
        ({"A": 3}, "string"),
        (["A=b"], "dictionary"),
    ],
)
def test_a_bad_table_is_one_error_naming_the_field(table: object, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as caught:
        validated(TaskCreate, body(table))
    assert caught.value.field is not None and caught.value.field.startswith("environment")
    with pytest.raises(InvalidInput, match=reason):
        validated(TaskUpdate, {"environment": table})
