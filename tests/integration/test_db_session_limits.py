"""The roles' PostgreSQL sessions carry their configured server-side limits and name."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from schedd.db import SessionLimits, create_database

pytestmark = pytest.mark.external_service


def test_a_connection_carries_its_limits_and_application_name(pg_url: str) -> None:
    limits = SessionLimits(
        idle_in_transaction_session_timeout=1.5, lock_timeout=2, statement_timeout=0
    )
    db = create_database(pg_url, limits=limits, application_name="schedd worker pid 7")
    try:
        with db.engine.connect() as conn:
            shown = [
                conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in (
                    "idle_in_transaction_session_timeout",
                    "lock_timeout",
                    "statement_timeout",
                    "application_name",
                )
            ]
    finally:
        db.dispose()
    assert shown == ["1500ms", "2s", "0", "schedd worker pid 7"]


def test_a_session_idle_in_its_transaction_is_ended_by_the_server(pg_url: str) -> None:
    limits = SessionLimits(idle_in_transaction_session_timeout=0.2)
    db = create_database(pg_url, limits=limits)
    try:
        with db.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="idle-in"):
            conn.execute(sa.text("SELECT 1"))  # the transaction begins, then sits idle
            time.sleep(0.6)
            conn.execute(sa.text("SELECT 1"))
    finally:
        db.dispose()
