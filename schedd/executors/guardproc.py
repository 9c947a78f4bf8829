"""The process guard: kills a worker's run groups when the worker dies or is fenced.

PR_SET_PDEATHSIG only reaches a worker's direct children; the processes those start
(``sleep 300 &`` in a shell task) would outlive a worker killed with SIGKILL. And a
worker that is frozen (SIGSTOP, a stalled VM) cannot stop its own runs when the
database declares it dead. So each worker starts one small guard process
(``python -m schedd.executors.guardproc``; the worker's side is
:class:`schedd.executors.guard.Guard`) in its own session and tells it, over a pipe,
one line per message:

- ``+PGID`` / ``-PGID``: a run's process group started / is gone;
- ``rPGID RUN CLAIM WORKER``: group PGID is run RUN's process, under that claim (sent
  before ``+PGID``; the guard records the run's end if its process has exited while
  the worker is frozen, see below);
- ``cPGID DIR``: the run of group PGID also has the cgroup DIR, killed with it
  (``cgroup.kill``, or freeze and kill: :func:`~.cgroups.kill_directory`), so its
  ``setsid`` and double-forked processes die too; ``-PGID`` forgets it;
- ``fSECONDS``: the fence time;
- ``hT``: a heartbeat sent at ``T`` (CLOCK_MONOTONIC seconds, the same clock in every
  process of the host) got through;
- ``dJSON``: how to reach the database (:class:`DatabaseAccess`: URL, session bounds,
  how long to keep trying), sent once, first; it never appears on the guard's argv,
  and the runs are not the guard's children, so they never see it;
- ``oJSON``: a run's process has ended: its outcome (:class:`HeldOutcome`, with the
  claim its report is fenced by), held until ``aRUN`` says the report is committed.

The guard kills (SIGKILL) every registered group once the last good heartbeat is
older than the fence time, whether the worker is dead, frozen or cut off from the
database; while it stays fenced it kills each newly registered group at once. A later
heartbeat lifts the fence. Before each kill it writes ``kPGID`` back on its stdout, so
the worker can tell a run the guard ended from one that died of SIGKILL by itself
(:meth:`~schedd.executors.guard.Guard.killed`). When the worker dies, however it dies,
the kernel closes the pipe; the guard reads end-of-file, kills every group still
registered and exits.

Outcomes (issue 13): a worker killed (or frozen past the heartbeat timeout) after a
run's command ended but before its batched report reached the database would take that
outcome with it; the run would be reaped as lost and run again. So the worker hands
each outcome to the guard as soon as it has reaped the run, and acks it once the report
has committed. When the worker dies (end-of-file) or the fence trips (the worker is
frozen or cut off), the guard writes the outcomes it still holds itself, with the same
fenced update as the worker's report (``claims.finish_many``: only while the run is
still this claim's and running), retrying while the database does not answer
(:class:`Outcomes`). A command that ends while its worker is frozen is not even reaped:
when the fence trips, before it kills, the guard reads the exit status of each run's
first process that is a zombie (``/proc/PID/stat``) and records that run's end too.
The database code is imported on the first run or held outcome, in the guard's writer
thread, never at start-up and never on the guard's main loop.

Unknown lines are ignored, so the protocol can grow (isolation's cgroups) without
breaking an older guard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schedd.executors.cgroups import kill_directory
from schedd.executors.guardlines import DatabaseAccess, HeldOutcome, RunBinding, from_json

log = logging.getLogger("schedd.executors.guard")

TICK = 0.05  # how often the guard looks at the clock when nothing arrives
RETRY = 0.5  # between the guard's attempts to write outcomes while the database fails


class Watch:
    """The guard's state: registered groups, the fence, and what it has killed."""

    def __init__(self, report: int | None = None, outcomes: Outcomes | None = None) -> None:
        self.groups: set[int] = set()
        self.cgroups: dict[int, str] = {}
        self.runs: dict[int, tuple[RunBinding, float]] = {}  # pgid -> run, registered at
        self.fence: float | None = None
        self.ok_at: float | None = None
        self.fenced = False
        self.outcomes = outcomes if outcomes is not None else Outcomes()
        self._report = report

    def handle(self, line: bytes, now: float) -> None:
        kind, value = line[:1], line[1:]
        try:
            if kind == b"+" and value.isdigit():
                self.groups.add(int(value))
                if self.fenced:
                    self._kill({int(value)})
            elif kind == b"-" and value.isdigit():
                self.groups.discard(int(value))
                self.cgroups.pop(int(value), None)
                self.runs.pop(int(value), None)
            elif kind == b"r":
                group, run_id, claim, worker = value.decode().split(" ", 3)
                self.runs[int(group)] = (RunBinding(int(run_id), int(claim), worker), now)
                self.outcomes.prepare()
            elif kind == b"c" and b" " in value:
                pgid, directory = value.split(b" ", 1)
                self.cgroups[int(pgid)] = directory.decode()
            elif kind == b"f":
                self.fence = float(value)
            elif kind == b"h":
                self.ok_at = max(self.ok_at or 0.0, float(value))
            elif kind == b"o":
                self.outcomes.hold(from_json(HeldOutcome, value))
            elif kind == b"a" and value.isdigit():
                self.outcomes.release(int(value))
            elif kind == b"d":
                self.outcomes.configure(from_json(DatabaseAccess, value))
        except (ValueError, TypeError):
            return
        self.check(now)

    def check(self, now: float) -> None:
        """Trip the fence when the last good heartbeat is too old; lift it when fresh."""
        if self.fence is None or self.ok_at is None:
            return
        late = now - self.ok_at > self.fence
        if late and not self.fenced:
            self.fenced = True
            self.record_ended(now)  # before the kill: what ended by itself keeps its end
            if self.groups:
                print(
                    f"schedd guard: no heartbeat for {now - self.ok_at:.1f} s (fence "
                    f"{self.fence:g} s): killing {len(self.groups)} run group(s)",
                    file=sys.stderr,
                    flush=True,
                )
            self._kill(self.groups)
            self.outcomes.set_due(True, "no heartbeat past the fence")
        elif not late and self.fenced:
            self.fenced = False
            self.outcomes.set_due(False)

    def record_ended(self, now: float, *, exits_only: bool = False) -> None:
        """Hold the end of each run whose first process has exited but was not reaped
        (its worker is frozen): the exit status is in the zombie's ``/proc`` entry.
        ``exits_only``: not those killed by a signal."""
        held = set(self.outcomes.held())
        for pgid in sorted(self.groups):
            bound = self.runs.get(pgid)
            if bound is None or bound[0].run_id in held:
                continue
            ended = zombie_status(pgid)
            if ended is None or (exits_only and not os.WIFEXITED(ended[0])):
                continue
            run, started = bound
            outcome = outcome_of(run, ended[0], now - started, ended[1])
            _say(
                f"run {run.run_id} ended ({outcome.status}, exit code {outcome.exit_code}) "
                "but its worker has not reaped it: recording it"
            )
            self.outcomes.hold(outcome)

    def deadline(self) -> float | None:
        if self.fence is None or self.ok_at is None or self.fenced:
            return None
        return self.ok_at + self.fence

    def _kill(self, groups: set[int]) -> None:
        for pgid in sorted(groups):
            if self._report is not None:
                with contextlib.suppress(OSError):
                    os.write(self._report, f"k{pgid}\n".encode())
            kill_group(pgid)
            if pgid in self.cgroups:
                kill_directory(Path(self.cgroups[pgid]))


def _say(message: str) -> None:
    print(f"schedd guard: {message}", file=sys.stderr, flush=True)


def _problem(exc: BaseException) -> str:
    """One line about a database error: the driver's first line, never the statement."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


Writer = Callable[[Any, list[HeldOutcome]], set[int]]


class Outcomes:
    """Run outcomes the guard holds, and the thread that writes them when it must.

    ``hold``/``release`` come from the worker; ``set_due(True)`` (fence tripped) and
    :meth:`close` (the worker is gone) make the writer thread write what is held, in
    one transaction, fenced by each run's claim; a failing database is retried every
    :data:`RETRY` seconds (after the worker died, for ``give_up_seconds`` at most).
    """

    def __init__(
        self,
        connect: Callable[[DatabaseAccess], Any] | None = None,
        write: Writer | None = None,
    ) -> None:
        self.access: DatabaseAccess | None = None
        self._connect = connect or open_database
        self._write = write or write_outcomes
        self._cond = threading.Condition()
        self._held: dict[int, HeldOutcome] = {}
        self._due = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self.written: list[int] = []  # runs whose outcome the guard recorded (tests)

    def configure(self, access: DatabaseAccess) -> None:
        with self._cond:
            self.access = access

    def hold(self, outcome: HeldOutcome) -> None:
        with self._cond:
            self._held[outcome.run_id] = outcome
            self._cond.notify_all()
        self.prepare()

    def prepare(self) -> None:
        """Start the writer thread, which loads the database code at once (off the main
        loop), so that a fence trip later only has to connect and write. Called on the
        first run and the first outcome: a worker that runs nothing never loads it."""
        with self._cond:
            if self._thread is None and self.access is not None:
                self._thread = threading.Thread(target=self._run, name="outcomes", daemon=True)
                self._thread.start()

    def release(self, run_id: int) -> None:
        with self._cond:
            self._held.pop(run_id, None)

    def held(self) -> list[int]:
        with self._cond:
            return sorted(self._held)

    def set_due(self, due: bool, reason: str = "") -> None:
        """Whether the guard must write what it holds (the worker cannot)."""
        with self._cond:
            if due and self._held and not self._due:
                _say(f"{reason}: recording {len(self._held)} run outcome(s) the worker holds")
            self._due = due or self._closing
            self._cond.notify_all()

    def close(self) -> None:
        """The worker is gone: write what is held (retrying), then return."""
        with self._cond:
            self._closing = True
            if self._held and not self._due:
                _say(f"the worker is gone: recording {len(self._held)} run outcome(s) it held")
            self._due = True
            thread = self._thread
            if thread is None and self._held and self.access is not None:
                thread = self._thread = threading.Thread(target=self._run, name="outcomes")
                thread.start()
            elif self._held and self.access is None:
                _say(f"no database to record {len(self._held)} run outcome(s) in")
            self._cond.notify_all()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        access = self.access
        assert access is not None
        database = None
        failing_since: float | None = None
        try:
            prepare()
        except Exception as exc:  # a broken install: say so, hold nothing back
            _say(f"cannot load the database code, outcomes are not recorded: {exc!r}")
            return
        while True:
            with self._cond:
                while not (self._closing or (self._due and self._held)):
                    self._cond.wait()
                if not (self._due and self._held):
                    return  # the worker is gone and nothing is left to write
                batch = sorted(self._held.values(), key=lambda outcome: outcome.run_id)
            try:
                if database is None:
                    database = self._connect(access)
                written = self._write(database, batch)
            except Exception as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    _say(f"cannot record run outcomes yet, retrying: {_problem(exc)}")
                with self._cond:
                    if self._closing and now - failing_since > access.give_up_seconds:
                        _say(
                            f"gave up recording the outcome of run(s) "
                            f"{', '.join(str(o.run_id) for o in batch)} after "
                            f"{now - failing_since:.0f} s; they will be reaped as lost"
                        )
                        return
                    self._cond.wait(RETRY)
                continue
            failing_since = None
            # Writes are rare (a fence trip, the worker's death): hold no connection
            # between them.
            with contextlib.suppress(Exception):
                database.dispose()
            database = None
            with self._cond:
                for outcome in batch:
                    if self._held.get(outcome.run_id) is outcome:
                        del self._held[outcome.run_id]
                self.written.extend(sorted(written))
            ids = [o.run_id for o in batch]
            others = [run_id for run_id in ids if run_id not in written]
            _say(
                f"recorded the outcome of run(s) {', '.join(map(str, sorted(written))) or '-'}"
                + (
                    f"; already recorded or no longer this worker's: {', '.join(map(str, others))}"
                    if others
                    else ""
                )
            )


def prepare() -> None:
    """Import the database code (slow: SQLAlchemy, the models), once it may be needed."""
    import schedd.db  # noqa: F401
    import schedd.scheduler.notify  # noqa: F401
    import schedd.services.claims  # noqa: F401


def zombie_status(pid: int) -> tuple[int, float] | None:
    """``(wait status, CPU seconds)`` of ``pid`` if it has exited but is not reaped yet
    (a zombie: its parent, the worker, is frozen); None otherwise."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command name, in parentheses) may hold spaces and parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 50 or fields[0] != "Z":  # fields[n - 3] is field n of proc(5)
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(fields[n - 3]) for n in (14, 15, 16, 17)) / ticks  # its and its children's
    return int(fields[52 - 3]), cpu


def outcome_of(run: RunBinding, status: int, duration: float, cpu: float) -> HeldOutcome:
    """The run's end as the worker would report this wait status (see
    ``process.exit_outcome``); ``duration`` runs until the guard looked."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        ended, exit_code, error = "completed", 0, None
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        ended, exit_code, error = "failed", 128 - code, f"killed by signal {-code} ({name})"
    else:
        ended, exit_code, error = "failed", code, f"exited with status {code}"
    return HeldOutcome(
        run.run_id, run.worker_id, run.claim, ended, exit_code, duration, error, None, cpu
    )


def open_database(access: DatabaseAccess) -> Any:
    from schedd.db import SessionLimits, create_database

    return create_database(
        access.url,
        max_connections=1,
        connection_timeout=access.connection_timeout,
        limits=SessionLimits(
            idle_in_transaction_session_timeout=access.idle_in_transaction_session_timeout,
            lock_timeout=access.lock_timeout,
            statement_timeout=access.statement_timeout,
        ),
        application_name=access.application_name,
    )


def write_outcomes(database: Any, batch: list[HeldOutcome]) -> set[int]:
    """Write ``batch`` as the worker's report would (fenced by each run's claim, the
    schedulers woken for retries and dependents); returns the runs written."""
    from schedd.models import RunStatus
    from schedd.scheduler.notify import runs_need_scheduler
    from schedd.services import claims

    finals = []
    for outcome in batch:
        try:
            status = RunStatus(outcome.status)
            finals.append(
                claims.Final(
                    claims.Claim(outcome.run_id, outcome.worker_id, outcome.claim),
                    status,
                    outcome.exit_code,
                    outcome.execution_time,
                    outcome.error_message,
                    outcome.result,
                    None,
                    outcome.cpu_seconds,
                    outcome.max_rss_mb,
                )
            )
        except ValueError as exc:
            _say(f"run {outcome.run_id}: not an outcome to record ({exc})")
    with database.session() as session:
        written = claims.finish_many(session, finals)
        runs_need_scheduler(session, sorted(written))
    return written


def kill_group(pgid: int) -> None:
    # Gone already, or (PermissionError) reused by another user's process.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def serve(fd: int, watch: Watch) -> None:
    """Read messages from ``fd`` until end-of-file, acting on the fence in between."""
    partial = b""
    while True:
        now = time.monotonic()
        watch.check(now)
        deadline = watch.deadline()
        wait = TICK if deadline is None else min(max(0.0, deadline - now) + 0.001, 1.0)
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        data = os.read(fd, 65_536)
        if not data:
            return
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        now = time.monotonic()
        for line in lines:
            watch.handle(line.strip(), now)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker frozen with a full pipe must never block the guard: a lost ``k`` line
    # only makes the worker report that run as killed by SIGKILL.
    os.set_blocking(sys.stdout.fileno(), False)
    watch = Watch(report=sys.stdout.fileno())
    serve(sys.stdin.fileno(), watch)
    # A worker frozen and then killed leaves its ended, unreaped commands to init, which
    # reaps them at once: best effort, read their ends before that. Only exits: the
    # worker's death SIGKILLs its children (PR_SET_PDEATHSIG), and a command killed by
    # a signal now may be one of those.
    watch.record_ended(time.monotonic(), exits_only=True)
    for pgid in watch.groups:
        kill_group(pgid)
    watch.outcomes.close()


if __name__ == "__main__":
    main()
