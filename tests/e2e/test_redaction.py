"""A password given as ``?password=`` in DATABASE_URL never shows: not in ``schedd
migrate``'s output, the daemon's start-up log, the system_logs table or
``GET /api/system/logs``. PostgreSQL trusts loopback here, so the password is sent and
ignored, and the daemon really runs with it."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from schedd.db import create_database
from schedd.schemas import SCOPES
from schedd.services import auth
from tests.proc import isolated_env, run, schedd, wait_until

SECRET = "Hunter2-query-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_password(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"password={SECRET}"


@pytest.mark.external_service
def test_a_query_password_shows_as_stars_in_all_four_places(
    tmp_path: Path, empty_pg_url: str
) -> None:
    url = with_password(empty_pg_url)
    port = free_port()
    env = isolated_env(
        tmp_path, {"DATABASE_URL": url, "JWT_SECRET": "j" * 40, "API_PORT": str(port)}
    )

    migrated = run(schedd("migrate"), env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "password=***" in migrated.stdout
    assert SECRET not in migrated.stdout + migrated.stderr

    db = create_database(empty_pg_url)
    try:
        with db.session() as session:
            key = auth.create_api_key(session, "admin", list(SCOPES), creator=None).key
        proc = subprocess.Popen(
            schedd("run", "--role", "api"),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            assert wait_until(lambda: _serves(base), 60), "the API did not start"

            def stored() -> list[str]:
                with db.engine.connect() as conn:
                    query = sa.text(
                        "SELECT message FROM system_logs WHERE message LIKE '%database: %'"
                    )
                    return [str(row[0]) for row in conn.execute(query)]

            assert wait_until(lambda: bool(stored()), 30), "the start-up event was not stored"
            rows = stored()
            assert any("password=***" in message for message in rows), rows
            assert not any(SECRET in message for message in rows)

            served = httpx.get(
                f"{base}/api/system/logs",
                params={"size": 200},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert served.status_code == 200, served.text
            messages = [item["message"] for item in served.json()["items"]]
            assert any("password=***" in m for m in messages), messages
            assert SECRET not in served.text
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        assert "database: " in out and "password=***" in out, out
        assert SECRET not in out
    finally:
        db.dispose()


def _serves(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False
