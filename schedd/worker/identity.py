"""Who a worker is: its id, host name and address.

Without ``worker.id`` the id is ``<hostname>-<pid>``: readable in ``schedctl worker
list``, and two workers on one host never share it. A restarted worker gets a new id;
the old row goes offline when its heartbeats stop and can be removed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from schedd.config import Settings
from schedd.db import normalize_url

MAX_ID = 200  # workers.id column


@dataclass(frozen=True)
class Identity:
    worker_id: str
    hostname: str
    ip_address: str | None
    pid: int


def identify(settings: Settings) -> Identity:
    hostname = socket.gethostname() or "localhost"
    pid = os.getpid()
    worker_id = settings.worker.id or f"{hostname[: MAX_ID - 12]}-{pid}"
    return Identity(worker_id, hostname, _address(settings.database.url), pid)


def _address(database_url: str) -> str | None:
    """The local address this host uses to reach the database (no packet is sent)."""
    host = make_url(normalize_url(database_url)).host
    if not host or host.startswith("/"):
        return "127.0.0.1"
    try:
        family = socket.getaddrinfo(host, 5432, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family[0], socket.SOCK_DGRAM) as probe:
            probe.connect(family[4])
            return str(probe.getsockname()[0])
    except OSError:
        return None
