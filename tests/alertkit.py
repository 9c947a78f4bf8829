"""Real alert receivers on loopback for the alert tests: an HTTP receiver that checks
webhook signatures, an SMTP server (aiosmtpd), and settings that point at them."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa

from schedd.config import Settings
from schedd.db import Database
from schedd.models import NotifyDelivery, RunOutput, TaskRun

SECRET_ENV = "SCHED_TEST_HOOK_SECRET"
SECRET = "hook-secret-for-tests"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed(self, secret: str = SECRET) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-sched-signature", ""), expected)


@dataclass
class Receiver:
    """An HTTP server on a fixed loopback port that records every POST; it can be
    stopped and started again on the same port (a receiver that is down)."""

    port: int = 0
    status: int = 200
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def notify_settings(
    channels: dict[str, dict[str, Any]], url: str | None = None, **notify: Any
) -> Settings:
    data: dict[str, Any] = {
        "notify": {
            "channels": channels,
            "http_allow": ["127.0.0.1"],
            "retry_initial_seconds": 1,
            "retry_max_seconds": 2,
            "check_interval": 0.1,
            **notify,
        }
    }
    if url is not None:
        data["database"] = {"url": url}
    return Settings.model_validate(data)


def hook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "secret_env": SECRET_ENV, "timeout_seconds": 5, **extra}


def add_ended_runs(
    db: Database, task_id: int, count: int, *, status: str, at: datetime, **values: Any
) -> list[int]:
    """``count`` runs of the task that ended ``status`` at ``at``, in one insert."""
    rows = [
        {
            "task_id": task_id,
            "status": status,
            "trigger": "schedule",
            "task_type": "shell",
            "created_at": at,
            "started_at": at,
            "completed_at": at,
            "execution_time": 1.5,
            "exit_code": 2 if status == "failed" else (0 if status == "completed" else None),
            "claim": 1,
            **values,
        }
        for _ in range(count)
    ]
    table = TaskRun.__table__  # type: ignore[attr-defined]
    with db.session() as session:
        ids = session.execute(sa.insert(table).returning(table.c.id), rows).scalars().all()
    return sorted(ids)


def add_output(db: Database, run_id: int, text: str) -> None:
    with db.session() as session:
        session.add(RunOutput(run_id=run_id, seq=0, offset=0, data=text))


def delivery_states(db: Database) -> dict[str, int]:
    table = NotifyDelivery.__table__  # type: ignore[attr-defined]
    with db.session() as session:
        rows = session.execute(
            sa.select(table.c.state, sa.func.count()).group_by(table.c.state)
        ).all()
    return {state: count for state, count in rows}
