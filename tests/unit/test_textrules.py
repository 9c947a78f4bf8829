"""The text rules the API enforces are the patterns it publishes (schedd/textrules.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from schedd import textrules
from schedd.api.app import create_app
from schedd.db import create_database
from schedd.schemas import TaskCreate
from tests.apikit import settings_for


def test_the_hidden_characters_are_this_pythons_control_and_format_characters() -> None:
    assert textrules.hidden_class() == textrules.HIDDEN_CLASS


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("backup", True),
        ("数据处理任务", True),
        ("a b", True),
        ("١٢", True),  # not ASCII digits: not an id
        ("12", False),
        ("", False),
        (" a", False),
        ("a\u2028", False),
        ("\u3000a", False),
        ("a ", False),
        ("a\n", False),  # $ would match before a final newline
        ("a\x1b[2J", False),
        ("a\u202eb", False),
        ("a\u200bb", False),
    ],
)
def test_a_name_is_accepted_exactly_when_the_published_pattern_matches(name: str, ok: bool) -> None:
    assert textrules.matches(textrules.NAME_PATTERN, name) is ok
    body = {"name": name, "executor": "shell", "command": "true"}
    if ok:
        TaskCreate.model_validate(body)
    else:
        with pytest.raises(ValidationError):
            TaskCreate.model_validate(body)


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        (textrules.TAG_PATTERN, "prod", True),
        (textrules.TAG_PATTERN, "a,b", False),
        (textrules.TAG_PATTERN, "prod\n", False),
        (textrules.TAG_PATTERN, "\x1d", False),
        (textrules.TAG_PATTERN, "a\u3000", False),
        (textrules.ENV_NAME_PATTERN, "PGHOST", True),
        (textrules.ENV_NAME_PATTERN, "SCHED_RUN_ID", False),
        (textrules.ENV_NAME_PATTERN, "1X", False),
        (textrules.RUN_AS_PATTERN, "sched-run:sched", True),
        (textrules.RUN_AS_PATTERN, "root\n", False),
        (textrules.LEVEL_PATTERN, "WARNING", True),
        (textrules.LEVEL_PATTERN, " info ", True),
        (textrules.LEVEL_PATTERN, "loud", False),
        (textrules.LEVEL_PATTERN, "", True),
        (textrules.LEVEL_PATTERN, "  ", False),
        (textrules.LEVEL_PATTERN, "info\n", False),
        (textrules.WORKING_DIR_PATTERN, "/srv/app", True),
        (textrules.WORKING_DIR_PATTERN, "/srv/../etc", False),
        (textrules.WORKING_DIR_PATTERN, "/srv/.", False),
        (textrules.WORKING_DIR_PATTERN, "/srv/.hidden", True),
    ],
)
def test_rules(pattern: str, value: str, ok: bool) -> None:
    assert textrules.matches(pattern, value) is ok


def _document(tmp_path: Path, **sections: dict[str, object]) -> dict[str, object]:
    db = create_database("sqlite://")
    try:
        return create_app(settings_for(tmp_path, **sections), db).openapi()
    finally:
        db.dispose()


def test_the_published_document_carries_the_rules_and_the_configured_limits(
    tmp_path: Path,
) -> None:
    doc = _document(tmp_path, auth={"token_ttl_seconds": 600})
    text = str(doc)
    schemas = doc["components"]["schemas"]  # type: ignore[index]
    assert schemas["TaskCreate"]["properties"]["name"]["pattern"] == textrules.NAME_PATTERN
    ttl = schemas["TokenCreate"]["properties"]["ttl_seconds"]["anyOf"][0]
    assert ttl["maximum"] == 600
    paths = doc["paths"]  # type: ignore[index]
    assert "security" not in paths["/metrics"]["get"]
    tasks = paths["/api/tasks"]["post"]["responses"]
    assert tasks["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "413" in tasks
    assert "429" not in paths["/health"]["get"]["responses"]
    assert not re.search(r"'(ge|le|gt|lt)':", text), "Pydantic keywords instead of JSON Schema"
    assert (
        "security"
        in _document(tmp_path, observability={"metrics_auth": True})["paths"][  # type: ignore[index]
            "/metrics"
        ]["get"]
    )


def test_the_published_notify_keys_are_the_rules_keys() -> None:
    from schedd.alerts.rules import EVENTS
    from schedd.schemas import NOTIFY_KEYS, check_notify

    assert NOTIFY_KEYS[: len(EVENTS)] == EVENTS
    for option in NOTIFY_KEYS[len(EVENTS) :]:
        with pytest.raises(ValueError) as caught:
            check_notify({option: "not a duration"})
        assert "unknown key" not in str(caught.value)
