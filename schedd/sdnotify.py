"""The systemd notify protocol (sd_notify(3)) without a dependency.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket) to a
``Type=notify`` service; the service sends newline-separated ``KEY=VALUE`` datagrams:
``READY=1`` once it serves, ``STOPPING=1`` when it begins to stop, ``WATCHDOG=1`` at
least every ``WATCHDOG_USEC`` microseconds when ``WatchdogSec=`` is set. Without
``NOTIFY_SOCKET`` every call does nothing, so schedd behaves the same outside systemd.

:class:`Watchdog` pings from a small thread, but only while ``alive()`` says the main
loop is still turning: a hung main loop stops the pings and systemd restarts it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping

log = logging.getLogger("schedd.sdnotify")


def socket_address(env: Mapping[str, str] | None = None) -> str | None:
    """The address in ``NOTIFY_SOCKET`` ('@' turned into the abstract NUL), or None."""
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not value or value[0] not in "/@":
        return None  # unset, or a kind of address (vsock:...) this module does not speak
    return "\0" + value[1:] if value[0] == "@" else value


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two pings (half of ``WATCHDOG_USEC``), or None when not asked.

    ``WATCHDOG_PID`` names the process the watchdog is meant for; when it is set to
    another pid (a child that inherited the environment), this process must not ping.
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def take_from_environment(
    environ: MutableMapping[str, str] | None = None,
) -> tuple[Notifier, float | None]:
    """The notifier and watchdog interval of this process, the variables then removed.

    Removed so that task processes (which inherit the worker's environment) neither
    talk to the service manager in schedd's name nor think a watchdog waits on them.
    """
    environ = os.environ if environ is None else environ
    found = {name: environ[name] for name in NOTIFY_VARIABLES if name in environ}
    notifier = Notifier(found)
    interval = watchdog_interval(found) if notifier.enabled else None
    for name in found:
        del environ[name]
    return notifier, interval


class Notifier:
    """Sends notify messages to the service manager; a no-op outside systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.address = socket_address(env)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (keys upper-cased); True when the datagram went out.

        A failure is logged, never raised: the service manager being gone must not
        stop the daemon.
        """
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning("cannot notify the service manager: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def ping(self) -> bool:
        return self.notify(WATCHDOG=1)


class Watchdog:
    """Pings every ``interval`` seconds while ``alive()`` is true, from a daemon thread."""

    def __init__(self, notifier: Notifier, interval: float, alive: Callable[[], bool]) -> None:
        self.notifier = notifier
        self.interval = interval
        self.alive = alive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(max(1.0, self.interval))

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.alive():
                self.notifier.ping()
            self._stop.wait(self.interval)


class Heartbeat:
    """What the main loop touches each turn; ``alive()`` when touched within ``limit``."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last <= self.limit
