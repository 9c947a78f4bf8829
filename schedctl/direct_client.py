"""The direct implementation of :class:`schedctl.client.Client`: ``schedctl --db URL``.

It opens the database and calls the same ``schedd.services`` functions the API routes
call, one transaction per call, and returns the same JSON shapes (the API's response
models dumped in JSON mode). Nothing is cached between calls.

What differs from the API, by nature: there is no caller to authenticate (whoever can
open the database is the administrator; the audit log names the OS user), a token
cannot be minted (a token belongs to an API key), and runs triggered here are handed
to workers by the scheduler's outbox sweeper instead of being published at once.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session

from schedctl.client import Client, Json, NotSupported
from schedd.config import Settings
from schedd.db import (
    Database,
    SessionLimits,
    check_schema,
    create_database,
    describe_url,
    sqlite_file,
)
from schedd.errors import InvalidInput, Unavailable
from schedd.schemas import (
    FireTimes,
    OutputRead,
    TaskCreate,
    TaskUpdate,
    validated,
)
from schedd.services import auth, lifecycle, output, runs, system, tasks, workers

# The alert channels (httpx, smtplib, their templates) and the broker registry load in
# the commands that use them (notify, system health): `task list` in a loop must not
# pay about 0.1 s for them.
from schedd.types import utcnow

T = TypeVar("T")

# Seconds `system health` waits for the broker: a broker that does not answer within
# them is reported unavailable instead of holding the command for its socket timeouts.
BROKER_HEALTH_TIMEOUT = 3.0


def _dump(model: BaseModel) -> Json:
    return model.model_dump(mode="json")


def _when(value: str | None, field: str) -> datetime | None:
    """An ISO-8601 query value, parsed the way the API parses it."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field}: not an ISO-8601 date-time: {value!r}", field=field) from None


def local_actor() -> str:
    """Who the audit log names for a change made with --db: the OS user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"db:{user}@{socket.gethostname()}"


class DirectClient(Client):
    mode = "direct"

    def __init__(self, settings: Settings, *, actor: str | None = None) -> None:
        url = settings.database.url
        self.settings = settings
        self.actor = actor or local_actor()
        self.health_reasons: dict[str, str] = {}  # set by health(): component -> why
        path = sqlite_file(url)
        if path is not None and not os.path.exists(path):
            # SQLite would quietly create an empty file at a mistyped path.
            raise Unavailable(
                f"no database at {path} (check --db; `schedctl db upgrade` creates one)"
            )
        self.db: Database = create_database(
            url,
            max_connections=2,
            connection_timeout=settings.database.connection_timeout,
            limits=SessionLimits.of(settings.database),
            application_name=f"schedctl pid {os.getpid()}",
        )
        check_schema(self.db)

    def close(self) -> None:
        self.db.dispose()

    def describe(self) -> str:
        return describe_url(self.settings.database.url)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self.db.session() as session:
                yield session
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise Unavailable(
                f"database error on {describe_url(self.settings.database.url)}: {reason}"
            ) from exc

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._session() as session:
            return fn(session, *args, **kwargs)

    # -- tasks ------------------------------------------------------------------------

    def create_task(self, body: Json) -> Json:
        data = validated(TaskCreate, body)
        zone = self.settings.scheduler.default_timezone
        directory = self.settings.worker.working_directory
        created = self._call(
            tasks.create_task,
            data,
            default_timezone=zone,
            actor=self.actor,
            worker_directory=directory,
            channels=self.settings.notify.channels.keys(),
        )
        return _dump(created)

    def list_tasks(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        executor: str | None = None,
        name: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return _dump(
            self._call(
                tasks.list_tasks,
                status=status,
                tag=tag,
                executor=executor,
                name=name,
                page=page,
                size=size,
            )
        )

    def get_task(self, ref: str) -> Json:
        return _dump(self._call(tasks.get_task, ref))

    def update_task(self, ref: str, body: Json) -> Json:
        data = validated(TaskUpdate, body)
        return _dump(
            self._call(
                tasks.update_task,
                ref,
                data,
                actor=self.actor,
                channels=self.settings.notify.channels.keys(),
            )
        )

    def delete_task(self, ref: str, *, force: bool = False) -> None:
        self._call(tasks.delete_task, ref, force=force, actor=self.actor)

    def trigger_task(self, ref: str, arguments: list[str] | None = None) -> Json:
        run = self._call(lifecycle.trigger_task, ref, arguments=arguments, actor=self.actor)
        return _dump(run)

    def pause_task(self, ref: str) -> Json:
        return _dump(self._call(lifecycle.pause_task, ref, actor=self.actor))

    def resume_task(self, ref: str) -> Json:
        return _dump(self._call(lifecycle.resume_task, ref, actor=self.actor))

    def task_runs(self, ref: str, *, page: int = 1, size: int = 50) -> Json:
        return _dump(self._call(runs.task_runs, ref, page=page, size=size))

    def next_fire_times(self, ref: str, count: int = 5) -> Json:
        times = self._call(runs.next_fire_times, ref, count)
        return _dump(FireTimes(times=times))

    # -- runs -------------------------------------------------------------------------

    def list_runs(
        self,
        *,
        status: str | None = None,
        task: str | None = None,
        worker: str | None = None,
        since: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return _dump(
            self._call(
                runs.list_runs,
                status=status,
                task=task,
                worker=worker,
                since=_when(since, "since"),
                page=page,
                size=size,
            )
        )

    def get_run(self, run_id: int) -> Json:
        return _dump(self._call(runs.get_run, run_id))

    def run_output(self, run_id: int, offset: int = 0) -> Json:
        piece = self._call(output.read, run_id, offset)
        return _dump(
            OutputRead(
                data=piece.text,
                offset=offset,
                next_offset=piece.next_offset,
                finished=piece.finished,
            )
        )

    def cancel_run(self, run_id: int) -> Json:
        return _dump(self._call(runs.cancel_run, run_id, actor=self.actor))

    def retry_run(self, run_id: int) -> Json:
        return _dump(self._call(runs.retry_run, run_id, actor=self.actor))

    # -- workers ----------------------------------------------------------------------

    def list_workers(self, *, status: str | None = None, page: int = 1, size: int = 50) -> Json:
        return _dump(self._call(workers.list_workers, status=status, page=page, size=size))

    def get_worker(self, worker_id: str) -> Json:
        return _dump(self._call(workers.get_worker, worker_id))

    def drain_worker(self, worker_id: str) -> Json:
        return _dump(self._call(workers.drain_worker, worker_id, actor=self.actor))

    def remove_worker(self, worker_id: str) -> None:
        self._call(workers.remove_worker, worker_id, actor=self.actor)

    # -- system -----------------------------------------------------------------------

    def health(self) -> Json:
        """What the API's /health answers, for the broker the configuration names.

        The broker is built for this call only and closed after it; a broker that does
        not answer within BROKER_HEALTH_TIMEOUT is reported unavailable. Why a component
        is unavailable is kept in :attr:`health_reasons` (the report has no room for it).
        """
        from schedd.brokers.registry import create_broker

        broker = create_broker(self.settings, self.db)
        try:
            health = system.check_health(self.db, broker, broker_timeout=BROKER_HEALTH_TIMEOUT)
        finally:
            broker.close()
        self.health_reasons = health.reasons
        return _dump(health.report)

    def notify_channels(self) -> list[Json]:
        from schedd.services import alerts

        return [_dump(channel) for channel in alerts.list_channels(self.settings)]

    def notify_test(self, channel: str) -> Json:
        from schedd.services import alerts

        return _dump(alerts.test_channel(self.settings, channel))

    def notify_deliveries(
        self,
        *,
        task: str | None = None,
        status: str | None = None,
        channel: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        from schedd.services import alerts

        return _dump(
            self._call(
                alerts.list_deliveries,
                task=task,
                state=status,
                channel=channel,
                page=page,
                size=size,
            )
        )

    def stats(self) -> Json:
        # No daemon is asked in --db mode, so there is no uptime to report.
        return _dump(self._call(system.stats, started_at=utcnow()))

    def system_logs(
        self,
        *,
        level: str | None = None,
        component: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return _dump(
            self._call(
                system.list_logs,
                level=level,
                component=component,
                start_time=_when(start_time, "start_time"),
                end_time=_when(end_time, "end_time"),
                page=page,
                size=size,
            )
        )

    def audit_log(self, *, page: int = 1, size: int = 50) -> Json:
        return _dump(self._call(system.list_audit, page=page, size=size))

    # -- credentials ------------------------------------------------------------------

    def create_api_key(self, name: str, scopes: list[str], expires_at: str | None = None) -> Json:
        # creator None: whoever can open the database may mint any key (recovery path).
        key = self._call(
            auth.create_api_key,
            name,
            scopes,
            creator=None,
            expires_at=_when(expires_at, "expires_at"),
        )
        return _dump(key)

    def list_api_keys(
        self, *, include_revoked: bool = False, page: int = 1, size: int = 50
    ) -> Json:
        keys = self._call(auth.list_api_keys, include_revoked=include_revoked, page=page, size=size)
        return _dump(keys)

    def revoke_api_key(self, key_id: int) -> None:
        self._call(auth.revoke_api_key, key_id, actor=None)

    def issue_token(self, scopes: list[str] | None, ttl_seconds: int | None) -> Json:
        raise NotSupported(
            "a token is minted by an API key through the API: use `schedctl token issue` "
            "without --db (an API key from `schedctl --db ... apikey create` works as a "
            "bearer token too)"
        )

    def whoami(self) -> Json:
        raise NotSupported(
            f"--db mode has no caller to describe (changes are audited as {self.actor})"
        )
