"""What the daemon does to itself so tasks cannot reach its secrets.

- Not dumpable (``PR_SET_DUMPABLE`` 0): ``/proc/PID/environ``, ``mem``, ``maps`` and
  ptrace of schedd are then refused to every process without CAP_SYS_PTRACE, even one
  running as the same user, which is what a task of the embedded default is. The
  environment holds DATABASE_URL and JWT_SECRET. Children get a fresh dumpable flag
  when they exec, so tasks are debuggable as usual.
- The data directory (SQLite database, admin key, JWT secret) is made 0700 when this
  user owns it and it is wider, so a run user other than the daemon's cannot list or
  read it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
import sys
from pathlib import Path

log = logging.getLogger("schedd.hardening")

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def make_undumpable() -> bool:
    """Clear this process's dumpable flag (Linux); False, with a warning, if it failed."""
    libc = _libc()
    if libc is None:
        return False
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning(
            "cannot clear the dumpable flag (%s): tasks running as this user could read "
            "schedd's environment",
            os.strerror(ctypes.get_errno()),
        )
        return False
    return True


def die_with_parent(sig: int, parent: int) -> bool:
    """Have the kernel send ``sig`` to this process when its parent ends (Linux); False
    when the parent (pid ``parent``) is gone already or the flag could not be set."""
    libc = _libc()
    if libc is None or libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        return False
    return os.getppid() == parent  # it may have died before the flag was set


def is_dumpable() -> bool:
    libc = _libc()
    return libc is not None and libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


def protect_data_dir(path: str | Path) -> None:
    """Make the data directory 0700 when this user owns it and it is open to others."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return  # created 0700 by whoever needs it first
    except OSError as exc:
        log.warning("cannot check the data directory %s: %s", path, exc.strerror)
        return
    if info.st_uid != os.geteuid() or not stat.S_IMODE(info.st_mode) & 0o077:
        return
    try:
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
    except OSError as exc:
        log.warning("cannot restrict the data directory %s: %s", path, exc.strerror)
        return
    log.info("data directory %s was open to other users; now 0700", path)
