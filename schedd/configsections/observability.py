"""``[observability]``: logs, metrics and tracing."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import field_validator

from schedd.configsections.base import Lowered, Section
from schedd.logs import parse_directives


class ObservabilitySettings(Section):
    metrics_enabled: bool = True
    tracing_enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318"
    log_level: str = "info"
    log_format: Annotated[Literal["text", "json"], Lowered] = "text"
    metrics_auth: bool = False
    metrics_listen: str = ""
    events_level: Annotated[Literal["debug", "info", "warning", "error"], Lowered] = "info"

    @field_validator("log_level")
    @classmethod
    def _valid_directives(cls, value: str) -> str:
        parse_directives(value)  # the parser the log setup uses, so both accept the same
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _valid_otlp_endpoint(cls, value: str) -> str:
        value = value.strip()
        scheme, _, rest = value.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError(
                f"not an http(s) URL: {value!r} (an OTLP/HTTP collector, e.g. "
                "'http://127.0.0.1:4318'; spans go to its /v1/traces)"
            )
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        value = value.strip()
        if value:
            cls.listen_address(value)
        return value

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of this process's own metrics listener; None when it is off."""
        return self.listen_address(self.metrics_listen) if self.metrics_listen else None

    @staticmethod
    def listen_address(value: str) -> tuple[str, int]:
        """(host, port) from "host:port", "[ipv6]:port" or ":port" (every IPv4
        address); ValueError naming what is wrong."""
        expected = "expected host:port, [ipv6]:port or :port, e.g. '127.0.0.1:9464'"
        if "/" in value or not re.fullmatch(r".*:[^:\]]*", value):
            raise ValueError(f"not an address with a port: {value!r} ({expected})")
        host, _, port_text = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            try:
                host = str(ipaddress.IPv6Address(host[1:-1]))
            except ValueError:
                raise ValueError(f"not an IPv6 address: {host!r} ({expected})") from None
        elif ":" in host or "[" in host or "]" in host:
            raise ValueError(f"an IPv6 address goes in brackets: {value!r} ({expected})")
        elif not host:
            host = "0.0.0.0"  # ":port": every IPv4 interface
        elif re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError(f"not an IPv4 address: {host!r} ({expected})") from None
        elif not re.fullmatch(
            r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*", host
        ):
            raise ValueError(f"not a host name: {host!r} ({expected})")
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port must be 1-65535, got {port_text!r} ({expected})")
        return host, int(port_text)
