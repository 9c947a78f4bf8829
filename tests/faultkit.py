"""A deployment of real `schedd run` processes on one PostgreSQL database, for fault tests."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select

from schedd.db import create_database
from schedd.models import TaskRun, Worker
from schedd.services import output
from tests import proc, services
from tests.workerkit import wait_until

FAST = {
    "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "0.3",
    # Room for a loaded CI machine (the suite runs on parallel workers): a live worker
    # whose heartbeat is late by a second must not fence itself.
    "SCHEDD_WORKER__FENCE_SECONDS": "2",
    "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "3",
    "SCHEDD_WORKER__KILL_GRACE_SECONDS": "1",
    "SCHEDD_SCHEDULER__SCHEDULING_INTERVAL": "0.2",
    "SCHEDD_SCHEDULER__REAP_INTERVAL": "0.2",
    "LOG_LEVEL": "info",
}


class Cluster:
    """schedd processes sharing one PostgreSQL database; all killed at the end."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self.db = create_database(url)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, *more: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``schedd run`` with ``role`` (and the ``more`` roles)."""
        log = (self.home / f"{role}-{len(self.procs)}.log").open("wb")
        extra = {"DATABASE_URL": self.url, **FAST, **env}
        roles = [arg for name in (role, *more) for arg in ("--role", name)]
        process = subprocess.Popen(
            proc.schedd("run", *roles),
            env=proc.isolated_env(self.home, extra),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(process)
        return process

    def start_worker(self, **env: str) -> tuple[subprocess.Popen[bytes], str]:
        process = self.start("worker", **env)
        worker_id = f"{socket.gethostname()}-{process.pid}"
        assert wait_until(lambda: self.worker(worker_id) is not None, 40), self.logs()
        return process, worker_id

    def worker(self, worker_id: str) -> Worker | None:
        with self.db.session() as session:
            return session.get(Worker, worker_id)

    def output(self, run_id: int) -> str:
        with self.db.session() as session:
            return output.read(session, run_id).text

    def runs_of(self, task_id: int) -> list[TaskRun]:
        with self.db.session() as session:
            return list(
                session.exec(
                    select(TaskRun).where(TaskRun.task_id == task_id).order_by(TaskRun.id)
                ).all()
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.home.glob("*.log"))
        )

    def close(self) -> None:
        for process in self.procs:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(10)
        self.db.dispose()


@contextmanager
def database_outage(url: str) -> Iterator[None]:
    """No connection to the database at ``url`` (and none of its backends) until exit."""
    name = sa.make_url(url).database
    engine = services.pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
    try:
        yield
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        engine.dispose()
