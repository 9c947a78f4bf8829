"""/health on a full disk: the embedded database answers reads while every write fails
with "database or disk is full"; /health must say the database is unavailable.

The disk is a real one: a small tmpfs mounted for the test (root only) and filled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from schedd.db import Database, create_database
from schedd.models import Task
from tests.apikit import api_env
from tests.schedctlkit import migrated_sqlite

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system with one file; return it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1):  # big blocks, then what is left byte by byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def task(name: str) -> Task:
    return Task(
        name=name,
        task_type="shell",
        executor="shell",
        command="true",
        description="x" * 60_000,
    )


def write_fails(db: Database) -> str | None:
    """Insert a task with a large description; the error when the write fails."""
    try:
        with db.session() as session:
            session.add(task(f"t{os.urandom(4).hex()}"))
    except sa.exc.OperationalError as exc:
        return str(exc.orig)
    return None


def test_health_reports_a_database_that_cannot_write(small_disk: Path, tmp_path: Path) -> None:
    db = create_database(migrated_sqlite(small_disk / "sched.db"))
    try:
        with api_env(db, tmp_path / "home") as env:
            assert env.client.get("/health").json()["database"] == "ok"
            filler = fill(small_disk)
            errors = [write_fails(db) for _ in range(5)]
            assert "database or disk is full" in {e for e in errors if e}, errors
            response = env.client.get("/health")
            assert response.status_code == 503, response.text
            assert (response.json()["status"], response.json()["database"]) == (
                "unavailable",
                "unavailable",
            )
            filler.unlink()  # space again: writes and /health recover
            assert write_fails(db) is None
            assert env.client.get("/health").json()["database"] == "ok"
    finally:
        db.dispose()
