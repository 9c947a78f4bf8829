"""The per-task outcome gauges the Prometheus alerting rules use."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schedd.db import Database
from schedd.metrics import database_registry
from tests.alertkit import add_ended_runs
from tests.scheduler_support import at, new_task


def samples(db: Database) -> dict[tuple[str, str], float]:
    text = generate_latest(database_registry(db)).decode()
    return {
        (sample.name, sample.labels.get("task", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("scheduler_task_")
    }


def test_last_success_and_failure_per_task(db: Database) -> None:
    backup = new_task(db, "backup", notify={"expect_every": "25h"})
    new_task(db, "never-ran")
    add_ended_runs(db, backup, 1, status="completed", at=at(-300))
    add_ended_runs(db, backup, 1, status="completed", at=at(-100))
    add_ended_runs(db, backup, 1, status="lost", at=at(-50))
    add_ended_runs(db, backup, 1, status="cancelled", at=at(-10))

    assert samples(db) == {
        ("scheduler_task_last_success_timestamp_seconds", "backup"): at(-100).timestamp(),
        ("scheduler_task_last_failure_timestamp_seconds", "backup"): at(-50).timestamp(),
        ("scheduler_task_expected_interval_seconds", "backup"): 25 * 3600.0,
    }
