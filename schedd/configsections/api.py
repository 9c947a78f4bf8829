"""``[api]``: where the HTTP API listens and whom it answers."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from schedd.configsections.base import Section


class ApiSettings(Section):
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] | None = None
    auth_failures_per_minute: int = Field(30, ge=1, le=1_000_000)
    ui_enabled: bool = True
    processes: int = Field(1, ge=1, le=64)  # HTTP server processes on the one port

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is not None and any(not h.strip() or "/" in h or " " in h for h in hosts):
            raise ValueError('entries must be host names or addresses (or "*" for any)')
        return hosts

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            # Browsers send the origin without a path, and the match is exact, so
            # "http://host/" would never match: refuse it instead of ignoring it.
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or (parts.query or parts.fragment)
            ):
                raise ValueError(
                    f"not an origin: {origin!r} (expected '*' or scheme://host[:port],"
                    " e.g. 'http://localhost:3000')"
                )
        return origins
