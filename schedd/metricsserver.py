"""Every schedd process's own Prometheus metrics, over HTTP (observability.metrics_listen).

The event metrics (fires, fire lag, missed fires, pass time, run durations, heartbeats)
are counted in the process where the event happens. The API's ``/metrics`` serves only
its own process's, so in a split deployment the scheduler's and the workers' would be
seen by nobody. With ``metrics_listen`` set, each process serves its default registry
with prometheus_client's own HTTP server, whatever its roles.

The database gauges (runs, workers, tasks) are not served here: they are the same from
every process and stay on the API's ``/metrics``. The listener has no authentication
(``metrics_auth`` covers the API only), so it belongs on loopback or a scrape network.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

from schedd.config import ObservabilitySettings
from schedd.errors import Unavailable

log = logging.getLogger("schedd.metrics")

KEY = "observability.metrics_listen"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


class MetricsListener:
    """prometheus_client's HTTP server for one registry, in a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.host = host
        self.requested_port = port
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    def start(self) -> None:
        """Listen and serve; Unavailable (one line) when the address cannot be bound."""
        try:
            self._server, self._thread = start_http_server(
                self.requested_port, addr=self.host, registry=self.registry
            )
        except OSError as exc:  # in use, not ours, or a name that does not resolve
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise Unavailable(
                f"{KEY}: cannot listen on {self.host}:{self.requested_port}: {reason}"
            ) from None
        self._thread.name = "metrics"

    def stop(self) -> None:
        """Stop serving and close the socket; waits for the serving thread briefly."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None


def start_listener(settings: ObservabilitySettings) -> MetricsListener | None:
    """Start this process's listener when ``metrics_listen`` asks for one; else None."""
    address = settings.metrics_address
    if address is None:
        return None
    host, port = address
    if not settings.metrics_enabled:
        log.info(
            "%s is %s but observability.metrics_enabled is false: no metrics are served",
            KEY,
            settings.metrics_listen,
        )
        return None
    listener = MetricsListener(host, port)
    listener.start()
    log.info("metrics of this process at %s (no authentication)", listener.url)
    if settings.metrics_auth and not _is_loopback(host):
        log.warning(
            "observability.metrics_auth covers the API's /metrics only: %s is open to"
            " whoever can reach %s (bind it to loopback or a scrape network)",
            listener.url,
            host,
        )
    return listener
