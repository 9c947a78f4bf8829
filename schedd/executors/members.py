"""The processes of one run: its process group, and its cgroup when it has one.

With a cgroup, the cgroup is the run: a ``setsid``, a double fork or a ``nohup … &``
leaves the process group but never the cgroup, so signals go to both, "still
running" means the cgroup is populated, and SIGKILL is ``cgroup.kill``. Without
one (the fallback) the worker keeps a list of the run's processes while it runs
(:meth:`RunMembers.track`): the leader's descendants, and the orphans the worker
adopted as subreaper whose environment says they belong to this run (SCHED_RUN_ID;
readable when the worker is root or the run user's own). A process that left the
group, or whose parent already died, is then still killed with the run, unless it
changed its own environment before the worker looked.

The worker is a child subreaper, so a run's orphans are re-parented to it and turn
into its zombies when they die: :meth:`RunMembers.alive` reaps the group's (waitid on
the process group) and the cgroup's (a zombie's ``/proc/PID/cgroup`` still names the
run's cgroup), never another run's processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

from schedd.executors.cgroups import RunCgroup

# Pids of runs' first processes (Popen waits for them: never reaped here).
LEADERS: set[int] = set()


class RunMembers:
    def __init__(self, pgid: int, cgroup: RunCgroup | None = None, run_id: int = 0) -> None:
        self.pgid = pgid
        self.cgroup = cgroup
        self.run_id = str(run_id)
        self.known: dict[int, float] = {}  # fallback: pid -> its create time
        self._tracked_at = 0.0

    def track(self, every: float = 0.1) -> None:
        """Fallback only: remember the run's processes outside its group too (at most
        once per ``every`` seconds)."""
        now = time.monotonic()
        if self.cgroup is not None or now - self._tracked_at < every:
            return
        self._tracked_at = now
        for pid in _descendants(self.pgid):
            self._remember(pid)
        for pid in _children() - LEADERS - self.known.keys():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).environ().get("SCHED_RUN_ID") == self.run_id:
                    self._remember(pid)
                    for grandchild in _descendants(pid):
                        self._remember(grandchild)

    def _remember(self, pid: int) -> None:
        if pid not in self.known:
            with contextlib.suppress(psutil.Error):
                self.known[pid] = psutil.Process(pid).create_time()

    def _known_alive(self) -> list[psutil.Process]:
        alive = []
        for pid, created in list(self.known.items()):
            try:
                process = psutil.Process(pid)
                if process.create_time() != created:
                    raise psutil.NoSuchProcess(pid)
                if process.status() == psutil.STATUS_ZOMBIE:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                    raise psutil.NoSuchProcess(pid)
            except psutil.Error:
                del self.known[pid]
                continue
            alive.append(process)
        return alive

    def pids(self) -> list[int]:
        """The run's processes the worker knows of now: the cgroup's, else the leader
        and those :meth:`track` found."""
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                return self.cgroup.pids()
        return [self.pgid, *self.known]

    def alive(self) -> bool:
        """True while any process of the run exists (after reaping its zombies)."""
        _reap_group(self.pgid)
        if self.cgroup is not None:
            if self.cgroup.populated():
                return True
        elif self._known_alive():
            return True
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # group gone already
            os.killpg(self.pgid, sig)
        if self.cgroup is None:
            self.track(every=0)
            for process in self._known_alive():
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
            return
        if sig == signal.SIGKILL:
            self.cgroup.kill()
            return
        for pid in self.cgroup.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill_and_reap(self, wait: float = 2.0) -> None:
        """SIGKILL whatever is left and reap it (the run's end)."""
        if self.alive():
            self.signal(signal.SIGKILL)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        if self.cgroup is not None:
            _reap_cgroup(self.cgroup)


def _reap_group(pgid: int) -> None:
    while True:
        try:
            reaped = os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return
        if reaped is None:
            return


def _descendants(pid: int) -> set[int]:
    """Every descendant of ``pid``, through /proc/PID/task/*/children."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            threads = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in threads:
            path = f"/proc/{current}/task/{tid}/children"
            with contextlib.suppress(OSError), open(path, encoding="ascii") as handle:
                for child in handle.read().split():
                    if int(child) not in found:
                        found.add(int(child))
                        todo.append(int(child))
    return found


def _children() -> set[int]:
    """This process's children, from each thread's ``children`` list (cheap: no walk
    of /proc); psutil's walk where the kernel does not offer the lists."""
    found: set[int] = set()
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        threads = []
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as handle:
                found.update(int(pid) for pid in handle.read().split())
        except OSError:
            return {child.pid for child in psutil.Process().children()}
    return found


def _reap_cgroup(cgroup: RunCgroup) -> None:
    """Reap this process's zombie children that were in ``cgroup`` (orphans of the run
    re-parented to the worker); never another run's processes."""
    for pid in _children() - LEADERS:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    continue
            with open(f"/proc/{pid}/cgroup", encoding="ascii") as handle:
                mine = cgroup.owns(handle.read())
        except (OSError, IndexError):
            continue
        if mine:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


class GroupKiller:
    """SIGTERM to the run now, SIGKILL once the grace has passed."""

    def __init__(self, members: RunMembers) -> None:
        self.members = members
        self.kill_at: float | None = None
        self.killed = False

    @property
    def started(self) -> bool:
        return self.kill_at is not None

    def terminate(self, grace: float) -> None:
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace
            if grace > 0:
                self.members.signal(signal.SIGTERM)
        else:
            self.kill_at = min(self.kill_at, time.monotonic() + grace)
        self.tick()

    def tick(self) -> None:
        if self.kill_at is not None and not self.killed and time.monotonic() >= self.kill_at:
            self.members.signal(signal.SIGKILL)
            self.killed = True
