"""The embedded database's files are private: they hold task commands and run output."""

from __future__ import annotations

import stat
from pathlib import Path

from schedd.db import create_database, migrate


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_directory_are_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    data = tmp_path / "share" / "sched"
    db = create_database(f"sqlite:///{data / 'sched.db'}")
    try:
        migrate(db)
        with db.session() as session:
            session.connection().exec_driver_sql("SELECT 1")
    finally:
        db.dispose()
    assert mode(data) == 0o700
    files = sorted(data.iterdir())
    assert data / "sched.db" in files
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    db = create_database(f"sqlite:///{path}")
    try:
        migrate(db)
    finally:
        db.dispose()
    assert mode(path) == 0o640
