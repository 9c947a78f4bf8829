"""The api role in-process: first-start files, serving, graceful stop."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from schedd.api.role import ApiRole
from schedd.config import Settings
from schedd.daemon import Context
from schedd.db import create_database, migrate
from schedd.models import ApiKey
from tests.apikit import RecordingBroker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _context(tmp_path: Path) -> Context:
    settings = Settings.model_validate(
        {"daemon": {"data_dir": str(tmp_path)}, "api": {"host": "127.0.0.1", "port": _free_port()}}
    )
    db = create_database(settings.database.url)
    migrate(db)
    return Context(settings=settings, db=db, broker=RecordingBroker())


def _run_once(ctx: Context) -> str:
    role = ApiRole(ctx)
    role.start()
    try:
        url = (Path(ctx.settings.daemon.data_dir) / "api.url").read_text().strip()
        key = (Path(ctx.settings.daemon.data_dir) / "admin.key").read_text().strip()
        me = httpx.get(url + "/api/whoami", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["key_name"] == "admin"
        return key
    finally:
        role.stop(graceful=True)
        assert role.join(10)


def test_first_start_creates_the_admin_key_and_later_starts_keep_it(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    first = _run_once(ctx)
    for name in ("admin.key", "jwt.secret"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert _run_once(ctx) == first
    with ctx.db.session() as session:
        assert [k.name for k in session.exec(select(ApiKey)).all()] == ["admin"]
    ctx.db.dispose()


def test_stop_closes_the_port(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    role = ApiRole(ctx)
    role.start()
    url = (tmp_path / "api.url").read_text().strip()
    assert httpx.get(url + "/health").status_code == 200
    role.stop(graceful=True)
    assert role.join(15)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health")
    ctx.db.dispose()
