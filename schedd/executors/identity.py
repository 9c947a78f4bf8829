"""Who a run's processes are: the run user, and the argv prefix that becomes it.

A run user is ``worker.run_as`` (or a task's ``run_as`` from ``worker.allowed_run_as``),
``user`` or ``user:group``, resolved through the system's user database when the
worker starts and again for each task's choice. :func:`drop_prefix` builds the
util-linux ``setpriv`` arguments that switch to it in the child, after fork and
before the task's program runs: supplementary groups (the user's, or none with an
explicit group), gid, uid, ``no_new_privs`` and empty inheritable, ambient and
bounding capability sets, so a task never holds a capability even when the worker
does (CAP_SETUID/CAP_SETGID under the shipped units). Every executor that starts
processes (and the function executor's pool) builds its argv with this one function.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import re
import shutil
from dataclasses import dataclass

# A POSIX-ish user or group name, or a number.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$")
CAP_SETUID = 7
CAP_SETGID = 6


@dataclass(frozen=True)
class RunUser:
    """A resolved user (and group) that run processes execute as."""

    name: str
    uid: int
    gid: int
    group: str
    home: str
    shell: str
    explicit_group: bool = False  # "user:group": no supplementary groups

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.group}" if self.explicit_group else self.name

    def variables(self) -> dict[str, str]:
        """HOME, USER, LOGNAME and SHELL of this user, for the run's environment."""
        return {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "SHELL": self.shell or "/bin/sh",
        }

    def is_current(self) -> bool:
        """True when the worker already is this user (no switch needed)."""
        return (
            self.uid == os.geteuid()
            and self.gid == os.getegid()
            and (not self.explicit_group or set(os.getgroups()) <= {self.gid})
        )


def resolve(spec: str) -> RunUser:
    """``user`` or ``user:group`` (names or numbers) as a RunUser; ValueError says why."""
    user_part, sep, group_part = spec.partition(":")
    if not _NAME.match(user_part) or (sep and not _NAME.match(group_part)):
        raise ValueError(f"{spec!r} is not user or user:group")
    try:
        entry = pwd.getpwuid(int(user_part)) if user_part.isdigit() else pwd.getpwnam(user_part)
    except (KeyError, OverflowError):
        raise ValueError(f"no user {user_part!r} on this host") from None
    gid, group = entry.pw_gid, _group_name(entry.pw_gid)
    if sep:
        try:
            found = (
                grp.getgrgid(int(group_part)) if group_part.isdigit() else grp.getgrnam(group_part)
            )
        except (KeyError, OverflowError):
            raise ValueError(f"no group {group_part!r} on this host") from None
        gid, group = found.gr_gid, found.gr_name
    return RunUser(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=gid,
        group=group,
        home=entry.pw_dir or "/",
        shell=entry.pw_shell or "/bin/sh",
        explicit_group=bool(sep),
    )


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def current_user() -> RunUser:
    """The user the worker runs as (the embedded default runs tasks as this user)."""
    uid = os.geteuid()
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        home = os.environ.get("HOME", "/")
        name = str(uid)
        return RunUser(name, uid, os.getegid(), _group_name(os.getegid()), home, "/bin/sh")
    return RunUser(
        name=entry.pw_name,
        uid=uid,
        gid=os.getegid(),
        group=_group_name(os.getegid()),
        home=entry.pw_dir or "/",
        shell=entry.pw_shell or "/bin/sh",
    )


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def can_switch_users() -> bool:
    """Whether this process could run tasks as another user (root or CAP_SETUID)."""
    return os.geteuid() == 0 or bool(_effective_capabilities() & (1 << CAP_SETUID))


@functools.cache
def setpriv_path() -> str | None:
    return shutil.which("setpriv")


def drop_prefix(user: RunUser | None) -> list[str]:
    """setpriv options that make the exec'd program ``user`` with no privileges.

    Without a user (the run user is the worker's own), only the capability sets are
    emptied and no_new_privs set. The caller puts ``--`` and the program after them.
    """
    options = ["--no-new-privs", "--inh-caps=-all"]
    if _ambient_supported():
        options.append("--ambient-caps=-all")
    options.append("--bounding-set=-all")
    if user is not None and not user.is_current():
        options = [
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--clear-groups" if user.explicit_group else "--init-groups",
            *options,
        ]
    return options


@functools.cache
def _ambient_supported() -> bool:
    return os.path.exists("/proc/self/status") and "CapAmb:" in _status_text()


def _status_text() -> str:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return status.read()
    except OSError:
        return ""
