"""The worker role: register, then claim and execute runs until stopped or drained.

Threads: ``worker`` (claim loop, then the drain), ``worker-heartbeat`` and
``worker-fence`` (:mod:`.heartbeat`), ``worker-monitor`` (:mod:`.monitor`), and one
``run-N`` thread per executing run. Runs never execute on a broker's thread.

``stop(graceful=True)`` drains (:mod:`.drain`); ``stop(graceful=False)`` kills at once
and hands back. An operator's drain (seen in a heartbeat reply) drains the same way;
when the worker is the process's only role, the process then stops itself (SIGTERM to
itself, so the daemon's normal shutdown runs and exits 0).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time

import psutil
from sqlalchemy.exc import SQLAlchemyError

from schedd import __version__, tracing
from schedd.brokers.base import Message
from schedd.config import Settings
from schedd.daemon import Context
from schedd.errors import ConfigError, NotFound, Unavailable, first_line
from schedd.executors import cgroupsv2
from schedd.executors.base import RunSpec, StopReason
from schedd.executors.guard import DatabaseAccess, Guard, HeldOutcome
from schedd.executors.identity import current_user
from schedd.executors.registry import create_executors
from schedd.executors.runas import check_run_as
from schedd.metrics import RUN_CPU, RUN_DURATION, RUN_MAX_RSS, WORKERS_REFUSED
from schedd.models import RunStatus
from schedd.services import workers
from schedd.services.claims import ClaimedRun
from schedd.worker.capture import OutputCapture
from schedd.worker.claiming import Claimer
from schedd.worker.drain import Drain
from schedd.worker.heartbeat import Heartbeat
from schedd.worker.identity import identify
from schedd.worker.monitor import Monitor
from schedd.worker.runs import Action, ActiveRun, Report, RunBook, execute

log = logging.getLogger("schedd.worker")

ISOLATION_MODES = {
    "cgroup2": "one cgroup per run (cgroup v2)",
    "hybrid": "one cgroup per run (cgroup v1 controllers, v2 kill)",
    "none": "process groups only (no cgroup could be made: setsid and double-forked "
    "processes of a run may outlive it; no resource limits)",
}
_UNFINISHED = {Action.hand_back: "stopped, to be handed back", Action.drop: "taken away"}
# Run outcomes stored as info events; the others (failed, timeout, ...) as warnings.
_QUIET_OUTCOMES = {"completed", "cancelled", _UNFINISHED[Action.hand_back]}


def check_settings(settings: Settings, *, host: bool = True) -> None:
    """Refuse to start a worker that could not keep its promises; ConfigError says why.
    ``host`` also checks that the working directory exists on this host."""
    source = settings.source or "configuration"
    fence, timeout = settings.effective_fence_seconds, settings.effective_heartbeat_timeout
    if fence >= timeout:
        raise ConfigError(
            source,
            "worker.fence_seconds",
            f"the fence time ({fence:g} s) must be shorter than the heartbeat timeout "
            f"({timeout:g} s), or a worker cut off from the database would run its tasks "
            "beside their replacements",
        )
    directory = settings.worker.working_directory
    if host and directory is not None and not os.path.isdir(directory):
        raise ConfigError(source, "worker.working_directory", f"{directory} is not a directory")
    interpreter = settings.worker.python_interpreter
    needs_python = {"python", "function"} & set(settings.worker.executor_types)
    if needs_python and shutil.which(interpreter) is None:
        raise ConfigError(
            source, "worker.python_interpreter", f"{interpreter!r} is not an executable"
        )
    check_run_as(settings)


def guard_database(ctx: Context) -> DatabaseAccess | None:
    """What the guard needs to record outcomes the worker could not (None: an in-memory
    database, which only this process can reach)."""
    url = ctx.db.engine.url
    if ctx.db.is_sqlite and url.database in (None, "", ":memory:"):
        return None
    database = ctx.settings.database
    return DatabaseAccess(
        url=url.render_as_string(hide_password=False),
        connection_timeout=database.connection_timeout,
        idle_in_transaction_session_timeout=database.idle_in_transaction_session_timeout,
        lock_timeout=database.lock_timeout,
        statement_timeout=database.statement_timeout,
        application_name=f"schedd guard of worker pid {os.getpid()}",
        # The fenced write is safe at any time (it only matches a run still running
        # under this claim); this only bounds how long a guard outlives its worker
        # while the database is down.
        give_up_seconds=max(300.0, 3 * ctx.settings.effective_heartbeat_timeout),
    )


def held_outcome(report: Report) -> HeldOutcome:
    """A finished run's report as the guard holds it (everything but the last output)."""
    assert report.status is not None
    run = report.run
    return HeldOutcome(
        run_id=run.run_id,
        worker_id=run.claim.worker_id,
        claim=run.claim.claim,
        status=report.status.value,
        exit_code=report.exit_code,
        execution_time=report.execution_time,
        error_message=report.error_message,
        result=run.capture.result() or None,
        cpu_seconds=report.cpu_seconds,
        max_rss_mb=report.max_rss_mb,
    )


class WorkerRole:
    name = "worker"

    def __init__(self, ctx: Context) -> None:
        check_settings(ctx.settings)
        self.ctx = ctx
        self.settings = ctx.settings.worker
        self.identity = identify(ctx.settings)
        self.worker_id = self.identity.worker_id
        self.task_types = ctx.settings.effective_task_types
        self.executor_types = list(self.settings.executor_types)
        self.guard = Guard()
        self.cgroups = cgroupsv2.detect(
            self.settings.cgroups, self.settings.cgroup_root, self.worker_id
        )
        self.executors = create_executors(
            self.settings, self.executor_types, self.guard, self.cgroups
        )
        self.book = RunBook(self.settings.max_concurrent_tasks)
        self.heartbeat = Heartbeat(
            ctx.db,
            self.worker_id,
            interval=self.settings.heartbeat_interval,
            fence_seconds=ctx.settings.effective_fence_seconds,
            held=self.book.held_ids,
            executing=lambda: len(self.book.executing()),
            on_fence=self._on_fence,
            on_draining=self._on_drain_request,
            register=self._register,
            on_ok=self.guard.heartbeat,
        )
        # A scheduler in this process (embedded, SQLite) is woken directly; others by the
        # NOTIFY the monitor sends on PostgreSQL.
        self.monitor = Monitor(
            ctx.db,
            self.book,
            publish=self._publish,
            wake_scheduler=ctx.tasks_changed.set,
            on_recorded=self.guard.release,
        )
        self.claimer = Claimer(
            ctx.db,
            ctx.broker,
            self.book,
            worker_id=self.worker_id,
            task_types=self.task_types,
            executor_types=self.executor_types,
            start_run=self._start_run,
            fenced=lambda: self.heartbeat.fenced,
        )
        self._stopping = threading.Event()
        self._forced = threading.Event()
        self._drain_requested = threading.Event()
        self._thread = threading.Thread(target=self._main, name="worker")

    # --- Role protocol ------------------------------------------------------------

    def start(self) -> None:
        try:
            # Refused by scheduler.max_workers: WorkerLimitReached stops the start with
            # the reason (exit 69); a supervisor restarting on failure (the systemd
            # units: every 5 s) makes the worker join when a place frees up.
            self._register()
        except workers.WorkerLimitReached:
            self.cgroups.close()  # made by detect(); nothing else has started yet
            raise
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"cannot register worker {self.worker_id}: {first_line(exc)}"
            ) from exc
        self._log_run_user()
        log.info(
            "run isolation: %s; limits: %s",
            ISOLATION_MODES[self.cgroups.mode],
            ", ".join(sorted(self.cgroups.controllers())) or "none",
        )
        self.guard.start(
            self.heartbeat.fence_seconds, self.heartbeat.ok_at, guard_database(self.ctx)
        )
        self.heartbeat.start()
        self.monitor.start()
        self._thread.start()
        log.info(
            "worker %s: executors %s, task types %s, up to %d runs at once",
            self.worker_id,
            ", ".join(self.executor_types),
            ", ".join(self.task_types),
            self.settings.max_concurrent_tasks,
        )

    def stop(self, *, graceful: bool) -> None:
        if not graceful:
            self._forced.set()
        self._stopping.set()
        self.ctx.broker.wake()
        self.book.wake()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- internals ----------------------------------------------------------------

    def _main(self) -> None:
        try:
            self.claimer.loop(lambda: self._stopping.is_set() or self._drain_requested.is_set())
        finally:
            Drain(
                db=self.ctx.db,
                book=self.book,
                monitor=self.monitor,
                heartbeat=self.heartbeat,
                worker_id=self.worker_id,
                grace=self.settings.drain_grace_seconds,
                kill_grace=self.settings.kill_grace_seconds,
                forced=self._forced,
            ).run()
            for executor in self.executors.values():
                executor.close()
            self.guard.close()
            self.cgroups.close()
            log.info("worker %s stopped", self.worker_id)
        if not self._stopping.is_set() and list(self.ctx.settings.daemon.roles) == ["worker"]:
            log.info("drained on request: stopping this process")
            os.kill(os.getpid(), signal.SIGTERM)

    def _register(self) -> None:
        me = self.identity
        sent_at = time.monotonic()
        with self.ctx.db.session() as session:
            try:
                before = workers.get_worker(session, self.worker_id)
            except NotFound:
                before = None
            # Same host, another pid that is dead: a restart under a configured id.
            force = (
                before is not None
                and before.hostname == me.hostname
                and before.pid not in (None, me.pid)
                and not psutil.pid_exists(before.pid)
            )
            try:
                workers.register(
                    session,
                    worker_id=self.worker_id,
                    hostname=me.hostname,
                    ip_address=me.ip_address,
                    port=self.ctx.metrics_port,
                    task_types=self.task_types,
                    executor_types=self.executor_types,
                    max_concurrent_tasks=self.settings.max_concurrent_tasks,
                    pid=me.pid,
                    version=__version__,
                    isolation=self.cgroups.mode,
                    stale_after=self.ctx.settings.effective_heartbeat_timeout,
                    force=force,
                    max_workers=self.ctx.settings.scheduler.max_workers,
                )
            except workers.WorkerLimitReached:
                WORKERS_REFUSED.inc()
                raise
        self.heartbeat.succeeded(sent_at)

    def _start_run(self, claimed: ClaimedRun) -> None:
        timeout = claimed.timeout_seconds or self.ctx.settings.scheduler.task_timeout
        spec = RunSpec(
            run_id=claimed.claim.run_id,
            task_id=claimed.task_id,
            task_name=claimed.task_name,
            executor=claimed.executor,
            command=claimed.command,
            arguments=claimed.arguments,
            timeout=float(timeout),
            attempt=claimed.retry_count,
            scheduled_for=claimed.scheduled_for or claimed.created_at,
            metadata=claimed.metadata,
            worker_id=self.worker_id,
            task_environment=claimed.environment,
            run_as=claimed.run_as,
            working_dir=claimed.working_dir,
            limits=claimed.limits,
            claim=claimed.claim.claim,
        )
        run = ActiveRun(claimed, spec, OutputCapture(self.settings.max_output_bytes))
        if tracing.enabled():
            attributes: dict[str, tracing.Attribute | None] = {
                "sched.run_id": spec.run_id,
                "sched.task": spec.task_name,
                "sched.attempt": spec.attempt,
                "sched.worker_id": self.worker_id,
            }
            with tracing.span(
                "worker.claim", parent=claimed.trace_context, attributes=attributes
            ) as claim:
                run.execute_span = tracing.start(
                    "worker.execute",
                    parent=tracing.traceparent(claim),
                    attributes={**attributes, "sched.executor": spec.executor},
                )
        self.book.add(run)
        log.debug("run %d (task %s, attempt %d) started", spec.run_id, spec.task_name, spec.attempt)
        threading.Thread(
            target=self._execute, args=(run,), name=f"run-{spec.run_id}", daemon=True
        ).start()

    def _execute(self, run: ActiveRun) -> None:
        report = execute(run, self.executors)
        if report.action is Action.finish:
            # Before anything else: from here until its report commits, the outcome
            # survives this worker's death or freeze in the guard (issue 13).
            self.guard.hold(held_outcome(report))
        if run.execute_span is not None:
            run.execute_span.set("sched.outcome", str(report.status or report.action))
            if report.exit_code is not None:
                run.execute_span.set("process.exit_code", report.exit_code)
            failed = report.status is not None and report.status is not RunStatus.completed
            run.execute_span.end(
                error=(report.error_message or str(report.status)) if failed else None
            )
        self.book.finished(report)
        if report.status is not None:
            RUN_DURATION.labels(run.spec.executor, report.status).observe(report.execution_time)
            if report.cpu_seconds is not None:
                RUN_CPU.labels(run.spec.executor).observe(report.cpu_seconds)
            if report.max_rss_mb is not None:
                RUN_MAX_RSS.labels(run.spec.executor).observe(report.max_rss_mb)
        outcome = report.status or _UNFINISHED[report.action]
        log.log(
            logging.INFO if outcome in _QUIET_OUTCOMES else logging.WARNING,
            "run %d (task %s) %s after %.2f s%s",
            run.run_id,
            run.spec.task_name,
            outcome,
            report.execution_time,
            f": {report.error_message}" if report.error_message else "",
            extra={
                "run_id": run.run_id,
                "task_id": run.claimed.task_id,
                "worker_id": self.worker_id,
            },
        )

    def _log_run_user(self) -> None:
        user = check_run_as(self.ctx.settings) or current_user()
        if self.settings.run_as:
            how = "worker.run_as"
        elif self.ctx.settings.is_embedded:
            how = "the invoking user (embedded default; set worker.run_as to change it)"
        else:
            how = "the worker's own user (it cannot switch users)"
        log.info(
            "tasks run as %s (uid %d, gid %d): %s; tasks may also choose: %s",
            user.name,
            user.uid,
            user.gid,
            how,
            ", ".join(self.settings.allowed_run_as) or "nothing else",
        )

    def _on_fence(self) -> None:
        self.book.stop_all(StopReason.fenced)

    def _on_drain_request(self) -> None:
        if self._stopping.is_set():
            return  # draining already (it was this worker that said so)
        log.info("worker %s was asked to drain", self.worker_id)
        self._drain_requested.set()
        self.ctx.broker.wake()
        self.book.wake()

    def _publish(self, messages: list[Message]) -> None:
        try:
            self.ctx.broker.publish(messages)
        except Unavailable as exc:
            log.warning(
                "cannot publish %d handed-back run(s) (the outbox sweeper will): %s",
                len(messages),
                exc,
            )
