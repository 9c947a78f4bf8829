"""Which user a run executes as, and in which directory: the worker's choice.

``worker.run_as`` is the default run user; a task's ``run_as`` must be one of
``worker.allowed_run_as`` (or the default itself). Users are resolved once, when the
worker starts (:func:`check_run_as` refuses a bad configuration with one ConfigError
naming the key); a task asking for anything else fails its run with a reason.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from schedd.config import Settings, WorkerSettings
from schedd.errors import ConfigError
from schedd.executors.identity import RunUser, can_switch_users, current_user, resolve


class RunAsRefused(Exception):
    """A run cannot start as the user or in the directory its task asks for."""


def check_run_as(settings: Settings) -> RunUser | None:
    """The worker's run user (None: the worker's own); ConfigError when it may not start.

    Outside the embedded default, a worker that could switch users (root, or
    CAP_SETUID) must be told which user to run tasks as: ``run_as = "root"`` is the
    explicit way to keep root.
    """
    source = settings.source or "configuration"
    worker = settings.worker
    checks = [("worker.run_as", worker.run_as)] if worker.run_as else []
    checks += [("worker.allowed_run_as", spec) for spec in worker.allowed_run_as]
    for key, spec in checks:
        try:
            user = resolve(spec)
        except ValueError as exc:
            raise ConfigError(source, key, str(exc)) from None
        if not user.is_current() and not can_switch_users():
            raise ConfigError(
                source,
                key,
                f"running tasks as {spec} needs root or CAP_SETUID and CAP_SETGID "
                f"(this worker runs as {current_user().name})",
            )
    if worker.run_as is not None:
        return resolve(worker.run_as)
    if not settings.is_embedded and can_switch_users():
        raise ConfigError(
            source,
            "worker.run_as",
            "this worker could run tasks as any user (it is root or holds CAP_SETUID): "
            'name the user tasks run as (run_as = "root" to keep root)',
        )
    return None


@dataclass
class RunUsers:
    """The default run user and the others tasks may choose, resolved at start."""

    default: RunUser | None = None
    allowed: dict[str, RunUser] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RunUsers:
        default = resolve(settings.run_as) if settings.run_as else None
        allowed: dict[str, RunUser] = {}
        for spec in [*settings.allowed_run_as, *([settings.run_as] if settings.run_as else [])]:
            try:
                allowed[spec] = resolve(spec)
            except ValueError:
                continue  # check_run_as refuses it before a worker starts
        return cls(default, allowed)

    def pick(self, requested: str | None) -> RunUser:
        """The user a task's ``run_as`` maps to; RunAsRefused when not allowed."""
        if requested is None:
            return self.default or current_user()
        user = self.allowed.get(requested)
        if user is None:
            offered = ", ".join(sorted(self.allowed)) or "none"
            raise RunAsRefused(
                f"run_as {requested!r} is not in this worker's allowed_run_as (allowed: {offered})"
            )
        return user


def working_directory(user: RunUser, task_dir: str | None, worker_dir: str | None) -> str:
    """Where a run starts: the task's working_dir, else the worker's working_directory,
    else the run user's home (``/`` when it has none). RunAsRefused when the run
    user could not enter the task's directory itself (the worker, maybe root, could)."""
    if task_dir is not None:
        if not os.path.isdir(task_dir):
            raise RunAsRefused(f"working_dir {task_dir} is not a directory on this worker")
        if not can_enter(task_dir, user):
            raise RunAsRefused(f"working_dir {task_dir} is not accessible to {user.name}")
        return task_dir
    if worker_dir is not None:
        return worker_dir
    return user.home if os.path.isdir(user.home) and can_enter(user.home, user) else "/"


def can_enter(path: str, user: RunUser) -> bool:
    """Whether ``user`` may search every directory on the way to ``path`` (mode bits;
    ACLs are not read). Root may enter anything."""
    if user.uid == 0:
        return True
    groups = _groups_of(user)
    current = os.path.realpath(path)
    parts = [current]
    while current != os.path.dirname(current):
        current = os.path.dirname(current)
        parts.append(current)
    for directory in parts:
        try:
            info = os.stat(directory)
        except OSError:
            return False
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _groups_of(user: RunUser) -> set[int]:
    if user.explicit_group:
        return {user.gid}
    try:
        return set(os.getgrouplist(user.name, user.gid))
    except OSError:
        return {user.gid}
