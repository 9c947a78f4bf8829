"""The HTTP API under test: a real uvicorn server on a free loopback port, over a test
database, with helpers to make keys of any scopes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from schedd.api.app import create_app
from schedd.api.role import bind
from schedd.brokers.base import Broker, Delivery, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Unavailable
from schedd.schemas import SCOPES
from schedd.services import auth

SECRET = "test-secret-" + "s" * 40


def settings_for(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {
        "auth": {"jwt_secret": SECRET},
        "daemon": {"data_dir": str(tmp_path / "data")},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Settings.model_validate(data)


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the test server did not start"
            thread.join(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class ApiEnv:
    db: Database
    settings: Settings
    app: FastAPI
    client: httpx.Client
    admin_key: str
    tasks_changed: threading.Event = field(default_factory=threading.Event)

    def key(self, *scopes: str, name: str = "test") -> str:
        with self.db.session() as session:
            return auth.create_api_key(session, name, list(scopes), creator=None).key

    @staticmethod
    def auth(credential: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(self.admin_key)


class RecordingBroker(Broker):
    """A broker that keeps what is published; ``down`` makes it unavailable."""

    name = "recording"

    def __init__(self) -> None:
        self.published: list[Message] = []
        self.down = False

    def publish(self, messages: Sequence[Message]) -> None:
        self.health()
        self.published.extend(messages)

    def consume(self, task_types: Sequence[str], max_count: int, timeout: float) -> list[Delivery]:
        return []

    def ack(self, delivery: Delivery) -> None:
        pass

    def reject(self, delivery: Delivery, *, requeue: bool = True) -> None:
        pass

    def wake(self) -> None:
        pass

    def health(self) -> None:
        if self.down:
            raise Unavailable("broker down (test)")

    def close(self) -> None:
        pass


@contextmanager
def api_env(
    db: Database, tmp_path: Path, broker: Broker | None = None, **sections: dict[str, Any]
) -> Iterator[ApiEnv]:
    settings = settings_for(tmp_path, **sections)
    changed = threading.Event()
    app = create_app(settings, db, broker, changed)
    with db.session() as session:
        admin = auth.create_api_key(session, "admin", list(SCOPES), creator=None).key
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield ApiEnv(db, settings, app, client, admin, changed)


def task_body(name: str = "backup", **fields: Any) -> dict[str, Any]:
    return {"name": name, "executor": "shell", "command": "echo hello", **fields}
