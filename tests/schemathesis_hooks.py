"""Schemathesis hooks for tests/integration/test_api_schema.py (loaded by the ``st``
CLI through SCHEMATHESIS_HOOKS).

Only rules JSON Schema cannot state are repaired in generated *valid* task bodies,
so that a valid request can succeed: the executor and its command go together (an
http task's command is a URL, a function task's ``module:function``), a schedule is
a cron expression, a time zone an IANA name, dependencies name existing tasks, and
``run_as`` must be one of the worker's allowed users, ``notify`` names configured
channels; a new key's expiry must
be in the future. Every other field stays as
generated, so an undocumented constraint anywhere else still fails the run.
Invalid (negative) cases are never touched.
"""

from __future__ import annotations

from typing import Any

import schemathesis

TASK_BODIES = {("POST", "/api/tasks"), ("PATCH", "/api/tasks/{ref}")}
NEW_KEY = ("POST", "/api/apikeys")


def _repair_task(body: dict[str, Any], *, create: bool) -> None:
    if create or "executor" in body:
        body["executor"] = "shell"
    if body.get("schedule") is not None:
        body["schedule"] = "*/5 * * * *"
    if body.get("timezone") is not None:
        body["timezone"] = "UTC"
    if body.get("dependencies"):
        body["dependencies"] = []
    if body.get("run_as") is not None:
        body["run_as"] = None
    if body.get("notify"):
        body["notify"] = {}
    if not create and "command" in body and body.get("executor") is None:
        body["executor"] = "shell"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    operation = (case.operation.method.upper(), case.operation.path)
    if not isinstance(case.body, dict):
        return
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    if operation in TASK_BODIES:
        _repair_task(case.body, create=operation[0] == "POST")
    elif operation == NEW_KEY and case.body.get("expires_at") is not None:
        case.body["expires_at"] = "2100-01-01T00:00:00Z"
    else:
        return
    if "json" in kwargs:
        kwargs["json"] = case.body
