"""etc/prometheus/sched.rules.yml: valid for promtool, its unit tests pass, and every
metric it names is one sched exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.db import Database, create_database
from schedd.metrics import database_registry, exposition
from tests import services
from tests.alertkit import add_ended_runs
from tests.schedctlkit import migrated_sqlite
from tests.scheduler_support import at, new_task

RULES = Path(__file__).resolve().parents[2] / "etc" / "prometheus"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """SQLite only: the SQL these tests reach is covered on both backends by
    test_alerts_delivery.py; this keeps the suite's time down."""
    database = create_database(migrated_sqlite(tmp_path / "sched.db"))
    yield database
    database.dispose()


def family(name: str) -> str:
    return re.sub(r"_(total|count|sum|bucket)$", "", name)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if services.in_ci():
            pytest.fail("promtool is missing (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


@pytest.mark.parametrize(
    "command", [["check", "rules", "sched.rules.yml"], ["test", "rules", "sched.rules.test.yml"]]
)
def test_promtool_accepts_the_rules(command: list[str]) -> None:
    done = subprocess.run(
        [promtool(), *command], cwd=RULES, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_the_rules_use_is_exposed(db: Database) -> None:
    task_id = new_task(db, "t", notify={"expect_every": "1h"})
    add_ended_runs(db, task_id, 1, status="completed", at=at(0))
    add_ended_runs(db, task_id, 1, status="failed", at=at(1))
    text = exposition(database_registry(db)).decode()
    # Families as declared (a labelled counter has no sample until it counts).
    exposed = {family(name) for name in re.findall(r"^# TYPE (scheduler_\w+) ", text, re.M)}

    used = {
        family(name)
        for name in re.findall(r"\bscheduler_\w+", (RULES / "sched.rules.yml").read_text())
    }

    assert used and used <= exposed, used - exposed
