"""The role supervisor: opens the database, starts the roles, waits for a signal.

Signal handlers only set flags (a handler that does work can deadlock on a lock the
interrupted code holds); the main thread acts on them. The first SIGTERM or SIGINT
asks every role to stop gracefully; a second one asks them to stop at once.

Under systemd (``Type=notify``) the daemon reports READY=1 once every role has started,
STOPPING=1 when the stop begins, and WATCHDOG=1 while the main loop turns
(:mod:`schedd.sdnotify`).

With ``observability.metrics_listen`` set, the process also serves its own Prometheus
registry, whatever its roles (:mod:`schedd.metricsserver`): started before the roles,
stopped after them.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from schedd import __version__, hardening, preflight
from schedd.brokers.base import Broker
from schedd.brokers.registry import create_broker
from schedd.config import Settings
from schedd.configsections import ROLES
from schedd.db import (
    Database,
    SessionLimits,
    check_schema,
    create_database,
    describe_url,
    migrate,
)
from schedd.metricsserver import MetricsListener, start_listener
from schedd.sdnotify import Heartbeat, Watchdog, take_from_environment
from schedd.services.systemlog import SystemLogWriter

if TYPE_CHECKING:
    from schedd.alerts.notifier import Notifier

log = logging.getLogger("schedd.daemon")

ROLE_NAMES = ROLES


class Role(Protocol):
    """A part of the daemon that runs in its own thread(s)."""

    name: str

    def start(self) -> None:
        """Start working in the background; return at once."""

    def stop(self, *, graceful: bool) -> None:
        """Ask the role to stop; graceful lets running work finish first. Returns at once."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the role has stopped; True when it has."""


@dataclass
class Context:
    """What every role gets: settings, database, broker, and the daemon's stop flag.

    All roles of one process share one broker, so a run the scheduler publishes wakes
    the worker in the same process at once (the embedded setup relies on it), and
    ``tasks_changed`` lets the API wake the scheduler when a task is created or edited.
    """

    settings: Settings
    db: Database
    broker: Broker
    stopping: threading.Event = field(default_factory=threading.Event)
    tasks_changed: threading.Event = field(default_factory=threading.Event)
    # The port this process serves its own metrics on (observability.metrics_listen),
    # which a worker registers as its ``port``; None without a listener.
    metrics_port: int | None = None


RoleFactory = Callable[[Context], Role]

# Where each role lives: "module:attribute", a callable taking the Context.
ROLE_MODULES: dict[str, str] = {
    "api": "schedd.api.role:ApiRole",
    "scheduler": "schedd.scheduler.role:SchedulerRole",
    "worker": "schedd.worker.role:WorkerRole",
}


def role_factory(name: str) -> RoleFactory | None:
    """The factory of a role, or None when this build does not have that role yet."""
    module_name, _, attr = ROLE_MODULES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    factory: RoleFactory = getattr(module, attr)
    return factory


def start_order(roles: list[str]) -> list[str]:
    """The scheduler first, then the other roles as given: on SQLite its lease is what
    refuses a second instance on the same database, and it must refuse before another
    role writes anything (the API writes ``api.url``, which schedctl reads to find the
    running instance)."""
    return sorted(roles, key=lambda name: name != "scheduler")


def open_database(settings: Settings, roles: list[str]) -> Database:
    """Open the configured database; migrate the embedded one, check any other.

    An embedded SQLite database belongs to this daemon, so it is brought up to date on
    start. A shared PostgreSQL schema is upgraded only by an explicit `schedd migrate`:
    a daemon finding it behind refuses to start (SchemaBehind) rather than migrate a
    schema other, older processes are still using.
    """
    database = settings.database
    db = create_database(
        database.url,
        max_connections=database.max_connections,
        connection_timeout=database.connection_timeout,
        limits=SessionLimits.of(database),
        application_name=f"schedd {'+'.join(roles)} pid {os.getpid()}",
    )
    if db.is_sqlite:
        before, after = migrate(db)
        if before != after:
            log.info("migrated the embedded database from %s to %s", before or "empty", after)
    else:
        check_schema(db)
    return db


def start_notifier(ctx: Context, roles: list[str]) -> Notifier | None:
    """The alert notifier, in processes with the api or scheduler role when channels
    are configured (see :mod:`schedd.alerts.notifier`)."""
    if not ctx.settings.notify.channels or not {"api", "scheduler"} & set(roles):
        return None
    from schedd.alerts.notifier import Notifier

    notifier = Notifier(ctx.db, ctx.settings)
    notifier.start()
    log.info(
        "alerts: %d channel(s) configured; this process sends them while it holds the "
        "notifier lease",
        len(ctx.settings.notify.channels),
    )
    return notifier


def stop_notifier(notifier: Notifier | None) -> None:
    if notifier is not None:
        notifier.stop()
        notifier.join(10.0)


class Daemon:
    def __init__(self, settings: Settings, roles: list[str]) -> None:
        self.settings = settings
        self.role_names = roles
        self._signals = 0
        self._wake = threading.Event()
        self.notifier, self._watchdog_interval = take_from_environment()
        self._heartbeat: Heartbeat | None = None
        self._turn = 1.0  # seconds between two turns of the main loop

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        self._wake.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        settings = self.settings
        # Handlers first: a SIGTERM during start-up (a long migration) still stops cleanly.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # Before anything a task could observe: schedd's memory and environment hold the
        # database URL and the JWT secret.
        hardening.make_undumpable()
        # Configuration the roles cannot start with stops the start before any work.
        preflight.check(settings, self.role_names)
        if settings.observability.tracing_enabled:
            from schedd import tracing  # OpenTelemetry is imported only when tracing is on

            tracing.setup(
                endpoint=settings.observability.otlp_endpoint,
                service="schedd",
                attributes={"sched.roles": ",".join(self.role_names)},
                source=str(settings.source or "configuration"),
            )
        hardening.protect_data_dir(settings.daemon.data_dir)
        db = open_database(settings, self.role_names)
        ctx = Context(settings=settings, db=db, broker=create_broker(settings, db))
        # Every process stores its own system events (a worker-only host's too).
        systemlog = SystemLogWriter(
            db, level=logging.getLevelName(settings.observability.events_level.upper())
        )
        systemlog.start()
        log.info(
            "schedd %s starting (pid %d): roles %s",
            __version__,
            os.getpid(),
            ", ".join(self.role_names),
        )
        log.info("config file: %s", settings.source or "none (built-in defaults)")
        log.info("data directory: %s", settings.daemon.data_dir)
        log.info("database: %s", describe_url(settings.database.url))

        roles: list[Role] = []
        metrics: MetricsListener | None = None
        notifier: Notifier | None = None
        try:
            # Before the roles: a metrics port in use stops the start before any work.
            metrics = start_listener(settings.observability)
            ctx.metrics_port = metrics.port if metrics is not None else None
            for name in start_order(self.role_names):
                factory = role_factory(name)
                if factory is None:
                    log.warning("role %s is not part of this build; it does not run", name)
                    continue
                role = factory(ctx)
                role.start()
                roles.append(role)
                log.info("role %s started", name)
            notifier = start_notifier(ctx, self.role_names)
        except BaseException:
            # A role that cannot start (a second SQLite scheduler, a port in use) must not
            # leave the roles already started keeping the process alive.
            stop_notifier(notifier)
            self._shutdown(ctx, roles, graceful=False)
            if metrics is not None:
                metrics.stop()
            systemlog.stop()
            ctx.db.dispose()
            raise
        log.info("schedd is running; send SIGTERM to stop")
        watchdog = self._notify_ready(len(roles))

        while self._signals == 0:
            self._beat()
            self._wake.wait(self._turn)
        log.info("stopping (signal received)")
        self.notifier.stopping()
        stop_notifier(notifier)
        self._shutdown(ctx, roles, graceful=True)
        if watchdog is not None:
            watchdog.stop()
        if metrics is not None:  # after the roles: a drain can still be watched
            metrics.stop()
        log.info("stopped")
        if settings.observability.tracing_enabled:
            from schedd import tracing

            tracing.shutdown()  # sends the spans still buffered
        systemlog.stop()
        ctx.db.dispose()
        return 0

    def _notify_ready(self, started: int) -> Watchdog | None:
        """Tell systemd (Type=notify) the roles serve; start the watchdog pings if asked.

        The pings come from a thread but only while the main thread keeps beating
        (:meth:`_beat`), so a main loop stuck for 3 turns lets systemd's watchdog fire.
        """
        roles = ", ".join(self.role_names)
        self.notifier.ready(f"running: {started} role(s) ({roles})")
        interval = self._watchdog_interval
        if interval is None:
            return None
        self._turn = min(1.0, interval)
        self._heartbeat = Heartbeat(limit=3 * self._turn)
        watchdog = Watchdog(self.notifier, interval, self._heartbeat.alive)
        watchdog.start()
        return watchdog

    def _beat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat()

    def _shutdown(self, ctx: Context, roles: list[Role], *, graceful: bool) -> None:
        """Stop the roles in reverse start order; a second signal makes it immediate."""
        ctx.stopping.set()
        for role in reversed(roles):
            role.stop(graceful=graceful)
        forced = not graceful
        for role in reversed(roles):
            while not role.join(0.2):
                self._beat()  # a long drain is progress, not a hang
                if not forced and self._signals > 1:
                    forced = True
                    log.warning("second signal: stopping at once")
                    for other in roles:
                        other.stop(graceful=False)
        ctx.broker.close()
