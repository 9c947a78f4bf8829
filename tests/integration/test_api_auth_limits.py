"""Failed authentication is limited per client address and per key prefix."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY
from sqlmodel import select

from schedd.api.authlimit import FailureLimiter
from schedd.db import Database
from schedd.models import AuditEntry
from tests.apikit import api_env

WRONG = "scheduler_" + "w" * 32


def failures(outcome: str) -> float:
    value = REGISTRY.get_sample_value("scheduler_api_auth_failures_total", {"outcome": outcome})
    return value or 0.0


def test_past_the_limit_the_api_answers_429_with_retry_after(db: Database, tmp_path: Path) -> None:
    with api_env(db, tmp_path, api={"auth_failures_per_minute": 3}) as api:
        before = failures("unauthorized"), failures("limited")
        wrong = {"Authorization": f"Bearer {WRONG}"}
        statuses = [api.client.get("/api/tasks", headers=wrong).status_code for _ in range(3)]
        limited = api.client.get("/api/tasks", headers=wrong)
        # The address is out of attempts: even a good key waits.
        good = api.client.get("/api/tasks", headers=api.admin)
        with api.db.session() as session:
            entries = session.exec(select(AuditEntry).where(AuditEntry.action == "auth")).all()
    assert statuses == [401, 401, 401]
    assert limited.status_code == 429
    assert limited.json()["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert good.status_code == 429
    assert [e.outcome for e in entries] == ["denied"] * 3
    assert all(e.target == f"key:{WRONG[:14]}" for e in entries)
    assert all(WRONG not in str(e.detail) and e.detail["address"] == "127.0.0.1" for e in entries)
    assert failures("unauthorized") - before[0] == 3
    assert failures("limited") - before[1] == 2


def test_a_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = FailureLimiter(2, clock=lambda: now[0])
    names = ["address:a", "prefix:p"]
    limiter.fail(names)
    limiter.fail(names)
    assert limiter.wait_seconds(names) == 30.0
    now[0] = 30.0
    assert limiter.wait_seconds(names) == 0.0
    assert limiter.wait_seconds(["address:other"]) == 0.0


def test_a_key_prefix_is_limited_across_addresses() -> None:
    limiter = FailureLimiter(1, clock=lambda: 0.0)
    limiter.fail(["address:a", "prefix:scheduler_abcd"])
    assert limiter.wait_seconds(["address:b", "prefix:scheduler_abcd"]) > 0
    assert limiter.wait_seconds(["address:b", "prefix:scheduler_zzzz"]) == 0
