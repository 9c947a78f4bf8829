"""How a run's first process starts: its cgroup, its user, death with the worker.

One function, :func:`launch_command`, turns a run's argv into what ``Popen`` execs, so
every executor that starts processes (shell, python, the function executor's pool)
starts them the same way:

``/bin/sh -c [GATE]JOIN sched-join PROCS... -- setpriv --pdeathsig KILL DROP... -- ARGV``

- GATE (runs under a guard): wait on stdin for the worker's "go", written once the
  guard knows the run's process group (see :data:`GATE`).

- JOIN (only when the run has a cgroup) is a few lines of sh that write ``0`` (itself)
  into each ``cgroup.procs`` file given and exec the rest, so the task's first process
  is inside the run's cgroup before it runs a single instruction of the task and
  everything it starts follows. sh is already on every host and adds one exec (see
  the cgroup cost in ``bench/worker_runs.py``); a ``preexec_fn`` would force Python's
  slow fork path for every run.
- setpriv (util-linux) sets PR_SET_PDEATHSIG, then drops to the run user (groups, gid,
  uid), sets no_new_privs and empties the capability sets
  (:func:`schedd.executors.identity.drop_prefix`), then execs ARGV. Without setpriv a
  preexec_fn does the same with prctl(), setgroups() and setres[ug]id(), slower.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from schedd.executors.identity import RunUser, drop_prefix

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SH = "/bin/sh"
# $1..: cgroup.procs files, then "--", then the command. Exit 126 (cannot execute)
# with a reason when a cgroup refuses the process.
JOIN = (
    'while [ "$1" != -- ]; do '
    'echo 0 > "$1" || { echo "sched: cannot join the run cgroup ($1)" >&2; exit 126; }; '
    'shift; done; shift; exec "$@"'
)

# The start gate (shell and python runs under a guard): the first process reads its
# stdin (a pipe from the worker) for "go", written once the run's group is registered
# with the guard and the fence does not hold, then takes /dev/null as stdin. A worker
# frozen or killed between the spawn and the registration never lets a command run
# that its guard does not know (and so could not fence): on end-of-file or anything
# else the process exits 125 without running it.
GATE = 'read -r sched_go && [ "$sched_go" = go ] || exit 125; exec </dev/null; '

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

Preexec = Callable[[], None]


@functools.cache
def setpriv_prefix() -> list[str] | None:
    """``setpriv --pdeathsig KILL`` if setpriv (util-linux 2.33+) works here, else None."""
    path = shutil.which("setpriv")
    if path is None or _libc is None:
        return None
    prefix = [path, "--pdeathsig", "KILL"]
    try:
        subprocess.run(
            [*prefix, *drop_prefix(None), "--", "true"],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix


def launch_command(
    argv: Sequence[str],
    user: RunUser | None = None,
    cgroup_procs: Sequence[str] = (),
    *,
    gate: bool = False,
) -> tuple[list[str], Preexec | None]:
    """The argv for Popen and, only without setpriv, the preexec_fn (see module doc);
    with ``gate`` the process first waits for "go" on its stdin (:data:`GATE`)."""
    prefix = setpriv_prefix()
    if prefix is not None:
        command = [*prefix, *drop_prefix(user), "--", *argv]
        preexec = None
    else:
        command = list(argv)
        preexec = _child_setup(os.getpid(), user)
    script = GATE if gate else ""
    if cgroup_procs:
        command = [SH, "-c", script + JOIN, "sched-join", *cgroup_procs, "--", *command]
    elif gate:
        command = [SH, "-c", script + 'exec "$@"', "sched-gate", *command]
    return command, preexec


def _child_setup(parent: int, user: RunUser | None) -> Preexec | None:
    """The preexec_fn without setpriv: die with the worker, become the run user.

    Only system calls run between fork and exec, so it is safe beside the worker's
    threads. Capabilities go with the uid change away from root; no_new_privs keeps
    setuid programs from bringing any back.
    """
    libc = _libc
    if libc is None:
        return None
    switch = user is not None and not user.is_current()

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
        if switch and user is not None:
            if user.explicit_group:
                os.setgroups([])
            else:
                os.initgroups(user.name, user.gid)
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    return setup
