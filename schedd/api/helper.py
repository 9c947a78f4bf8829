"""A helper API process (``api.processes`` > 1): serves the API on the listening socket
its parent bound and passed down, until SIGTERM or the parent's end.

Started by :class:`schedd.api.processes.Helpers` as ``python -m schedd.api.helper
--fd N --parent PID [--config FILE]``; not a command for operators. It reads the same
configuration as its parent (the same file and environment), opens its own database
pool and broker connection, and writes no first-start files (the parent did).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from types import FrameType

from schedd import hardening, logs
from schedd.config import load_settings
from schedd.errors import SchedError

log = logging.getLogger("schedd.api")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedd.api.helper")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--parent", type=int, required=True, help="the parent's pid")
    parser.add_argument("--config", help="the parent's config file")
    args = parser.parse_args(argv)
    if not hardening.die_with_parent(signal.SIGTERM, args.parent):
        return 1  # the parent is gone already
    hardening.make_undumpable()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    settings = load_settings(args.config)
    logs.setup(settings.observability.log_level, settings.observability.log_format)

    from schedd.api.role import GRACEFUL_SECONDS, ApiRole
    from schedd.brokers.registry import create_broker
    from schedd.daemon import Context
    from schedd.db import create_database
    from schedd.services.systemlog import SystemLogWriter

    db = create_database(
        settings.database.url,
        max_connections=settings.database.max_connections,
        connection_timeout=settings.database.connection_timeout,
    )
    ctx = Context(settings=settings, db=db, broker=create_broker(settings, db))
    systemlog = SystemLogWriter(
        db, level=logging.getLevelName(settings.observability.events_level.upper())
    )
    systemlog.start()
    role = ApiRole(ctx, inherited=socket.socket(fileno=args.fd))
    try:
        role.start()
        log.debug("API process %d serving", os.getpid())
        stop.wait()
        role.stop(graceful=True)
        role.join(GRACEFUL_SECONDS + 5)
    except SchedError as exc:
        log.error("API process %d: %s", os.getpid(), exc)
        return 1
    finally:
        ctx.broker.close()
        systemlog.stop()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
