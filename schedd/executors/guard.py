"""The process guard: kills a worker's run groups when the worker dies or is fenced.

PR_SET_PDEATHSIG only reaches a worker's direct children; the processes those start
(``sleep 300 &`` in a shell task) would outlive a worker killed with SIGKILL. And a
worker that is frozen (SIGSTOP, a stalled VM) cannot stop its own runs when the
database declares it dead. So each worker starts one small guard process
(``python -m schedd.executors.guard``) in its own session and tells it, over a pipe,
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
(:meth:`Guard.killed`). When the worker dies, however it dies, the kernel closes the
pipe; the guard reads end-of-file, kills every group still registered and exits.

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
import dataclasses
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schedd.executors.cgroups import kill_directory

log = logging.getLogger("schedd.executors.guard")

TICK = 0.05  # how often the guard looks at the clock when nothing arrives
RETRY = 0.5  # between the guard's attempts to write outcomes while the database fails


def _json_line(kind: str, value: Any) -> str:
    # ASCII JSON never holds a raw newline: one message, one line.
    return kind + json.dumps(dataclasses.asdict(value), separators=(",", ":")) + "\n"


def _from_json(cls: Any, value: bytes) -> Any:
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: item for key, item in data.items() if key in names})


@dataclass(frozen=True)
class DatabaseAccess:
    """What the guard needs to write outcomes: the worker's database and its bounds."""

    url: str  # with its password: sent over the pipe only, never logged
    connection_timeout: float
    idle_in_transaction_session_timeout: float
    lock_timeout: float
    statement_timeout: float
    application_name: str
    give_up_seconds: float  # after the worker died, how long to retry a failing database

    def line(self) -> str:
        return _json_line("d", self)


@dataclass(frozen=True)
class RunBinding:
    """Which run (and claim) a registered process group belongs to."""

    run_id: int
    claim: int
    worker_id: str


@dataclass(frozen=True)
class HeldOutcome:
    """A run's end as the worker's report writes it, fenced by the same claim."""

    run_id: int
    worker_id: str
    claim: int
    status: str  # completed, failed, timeout, cancelled
    exit_code: int | None
    execution_time: float
    error_message: str | None
    result: str | None
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None

    def line(self) -> str:
        return _json_line("o", self)


class Guard:
    """The worker's side of the guard: start it, register groups, report heartbeats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed: set[int] = set()
        self._partial = b""
        self._holding: set[int] = set()  # runs whose outcome the guard holds
        self._fence: float | None = None  # what the guard process was told
        self._ok_at: float | None = None

    def start(
        self,
        fence_seconds: float | None = None,
        ok_at: float | None = None,
        database: DatabaseAccess | None = None,
    ) -> None:
        """Start the guard; with ``database`` it can write held outcomes itself."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "schedd.executors.guard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        if database is not None:
            self._send(database.line())
        if fence_seconds is not None:
            self._fence = fence_seconds
            self._send(f"f{fence_seconds!r}\n")
        if ok_at is not None:
            self.heartbeat(ok_at)

    def fenced(self) -> bool:
        """Whether the fence holds now, judged as the guard process judges it: the last
        heartbeat that got through is older than the fence time. A run registered then
        is killed at once, so its command must not be let start (see launch.GATE)."""
        with self._lock:
            fence, ok_at = self._fence, self._ok_at
        return fence is not None and ok_at is not None and time.monotonic() - ok_at > fence

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def add(self, pgid: int, cgroup: str | None = None, run: RunBinding | None = None) -> None:
        self.forget(pgid)  # a reused group id starts clean
        if run is not None:
            self._send(f"r{pgid} {run.run_id} {run.claim} {run.worker_id}\n")
        if cgroup is not None:  # before the group: a fenced guard kills at "+" at once
            self._send(f"c{pgid} {cgroup}\n")
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def heartbeat(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (time.monotonic()) got through."""
        with self._lock:
            self._ok_at = sent_at if self._ok_at is None else max(self._ok_at, sent_at)
        self._send(f"h{sent_at!r}\n")

    def hold(self, outcome: HeldOutcome) -> None:
        """A run's process has ended with ``outcome``: the guard keeps it until
        :meth:`release`, and writes it itself if the worker dies or is fenced first."""
        with self._lock:
            self._holding.add(outcome.run_id)
        self._send(outcome.line())

    def release(self, run_ids: Iterable[int]) -> None:
        """The reports of ``run_ids`` are committed (or were not ours): drop them."""
        with self._lock:
            released = [run_id for run_id in run_ids if run_id in self._holding]
            self._holding.difference_update(released)
        if released:
            self._send("".join(f"a{run_id}\n" for run_id in released))

    def killed(self, pgid: int) -> bool:
        """True if the guard killed ``pgid`` because the worker was fenced.

        The guard writes its ``k`` line before it kills, so once a run's process is
        seen dead the line is already in the pipe.
        """
        with self._lock:
            self._drain()
            return pgid in self._killed

    def forget(self, pgid: int) -> None:
        with self._lock:
            self._killed.discard(pgid)

    def _drain(self) -> None:
        """Read the guard's ``k`` lines without blocking (caller holds the lock)."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        while True:
            try:
                data = os.read(proc.stdout.fileno(), 65_536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                if line[:1] == b"k" and line[1:].isdigit():
                    self._killed.add(int(line[1:]))

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            self._drain()  # keep the guard's stdout from filling up
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                # The guard is gone (killed by hand?): direct children still die with the
                # worker through PR_SET_PDEATHSIG; say so once and stop writing.
                log.warning(
                    "the process guard (pid %s) has exited; grandchildren of "
                    "runs may outlive this worker, and a frozen worker's runs are "
                    "no longer stopped at the fence time",
                    proc.pid,
                )
                self._proc = None

    def close(self) -> None:
        """End the guard: it kills what is still registered (normally nothing).

        Outcomes it still holds (reports the worker could not write: the database is
        down) are written by the guard once the database answers; it is left to do
        that on its own rather than killed."""
        with self._lock:
            proc, self._proc = self._proc, None
            holding = len(self._holding)
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            if holding:
                log.warning(
                    "the process guard (pid %s) holds %d run outcome(s) this worker could "
                    "not write; it writes them when the database answers",
                    proc.pid,
                    holding,
                )
                return
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


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
                self.outcomes.hold(_from_json(HeldOutcome, value))
            elif kind == b"a" and value.isdigit():
                self.outcomes.release(int(value))
            elif kind == b"d":
                self.outcomes.configure(_from_json(DatabaseAccess, value))
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
