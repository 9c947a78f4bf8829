"""The api role: the HTTP API served by uvicorn in a thread of the daemon.

With ``api.processes`` > 1 (PostgreSQL) the role also starts helper processes that
serve on the same listening socket (:mod:`schedd.api.processes`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading

import uvicorn

from schedd.api import bootstrap
from schedd.api.app import create_app
from schedd.api.processes import Helpers
from schedd.daemon import Context
from schedd.errors import Unavailable

log = logging.getLogger("schedd.api")

START_TIMEOUT = 15.0
GRACEFUL_SECONDS = 10


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (listening starts with the server); Unavailable when
    the address is taken or not ours, so the daemon stops with one clear line."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"api: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class ApiRole:
    """Serves the API until stopped; a graceful stop lets requests in flight finish."""

    name = "api"

    def __init__(self, ctx: Context, *, inherited: socket.socket | None = None) -> None:
        """``inherited``: serve on this listening socket as a helper of another API
        process (which made the first-start files and starts the helpers)."""
        settings = bootstrap.with_secret(ctx.settings, bootstrap.jwt_secret(ctx.settings))
        self.settings = settings
        self.db = ctx.db
        self.app = create_app(settings, ctx.db, ctx.broker, ctx.tasks_changed)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_config=None,  # the daemon's logging; the access log has no headers
                server_header=False,
                lifespan="off",
                timeout_graceful_shutdown=GRACEFUL_SECONDS,
            )
        )
        self._sock: socket.socket | None = inherited
        self._helper = inherited is not None
        self._helpers: Helpers | None = None
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None
        port: int = self._sock.getsockname()[1]
        return port

    def start(self) -> None:
        if not self._helper:
            self._sock = bind(self.settings.api.host, self.settings.api.port)
            bootstrap.ensure_admin_key(self.settings, self.db)
        self._thread.start()
        if not self._wait_started():
            self.stop(graceful=False)
            self._thread.join(5)
            raise Unavailable(f"api: the HTTP server did not start: {self._error or 'timeout'}")
        if self._helper:
            return
        if self.settings.api.processes > 1:
            assert self._sock is not None
            self._helpers = Helpers(
                self.settings.api.processes - 1, self._sock, self.settings.source
            )
            self._helpers.start()
        bootstrap.write_api_url(self.settings, self.port)
        url = bootstrap.base_url(self.settings.api.host, self.port)
        log.info("API listening on %s (OpenAPI at %s/openapi.json)", url, url)

    def _wait_started(self) -> bool:
        waited = 0.0
        while not self.server.started:
            if not self._thread.is_alive() or waited >= START_TIMEOUT:
                return False
            self._thread.join(0.02)
            waited += 0.02
        return True

    def _serve(self) -> None:
        assert self._sock is not None
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # SystemExit from uvicorn's start-up included
            self._error = exc
            log.error("the HTTP server stopped: %r", exc)
        finally:
            self._sock.close()

    def stop(self, *, graceful: bool) -> None:
        if self._helpers is not None:
            self._helpers.stop(graceful=graceful)
        self.server.should_exit = True
        if not graceful:
            self.server.force_exit = True

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        if self._helpers is not None and not self._helpers.join(timeout):
            return False
        return not self._thread.is_alive()
