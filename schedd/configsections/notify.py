"""``[notify]``: alert channels (``[notify.channels.NAME]``), default rules and
delivery pacing."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from schedd import configfile
from schedd.configfile import SettingError
from schedd.configsections.base import Lowered, Section, unique
from schedd.executors.netpolicy import check_allow_entry

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ChannelType = Literal["webhook", "slack", "email", "command"]
# The keys each channel type uses beside type and timeout_seconds.
CHANNEL_KEYS: dict[str, frozenset[str]] = {
    "webhook": frozenset({"url", "url_env", "secret_env"}),
    "slack": frozenset({"url", "url_env"}),
    "email": frozenset(
        {
            "smtp_host",
            "smtp_port",
            "security",
            "username",
            "password_env",
            "sender",
            "to",
            "ca_file",
        }
    ),
    "command": frozenset({"command"}),
}


class ChannelSettings(Section):
    """One ``[notify.channels.NAME]`` table. Secrets are never values here: the
    ``*_env`` keys name the environment variables that hold them."""

    type: Annotated[ChannelType, Lowered]
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    security: Annotated[Literal["starttls", "tls", "none"], Lowered] = "starttls"
    username: str | None = None
    password_env: str | None = None
    sender: str | None = None
    to: list[str] = Field(default_factory=list, max_length=100)
    ca_file: str | None = None
    command: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("url_env", "secret_env", "password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_channel_url(value)
        return value

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        used = CHANNEL_KEYS[self.type]
        for key in sorted(set().union(*CHANNEL_KEYS.values()) - used):
            if key in self.model_fields_set:
                raise SettingError(f"is not used by {self.type} channels", key)
        if self.type in ("webhook", "slack") and (self.url is None) == (self.url_env is None):
            raise SettingError(
                f"a {self.type} channel needs url or url_env (one of them)", "url", "url_env"
            )
        if self.type == "email":
            if not self.smtp_host:
                raise SettingError("an email channel needs smtp_host", "smtp_host")
            if not self.sender or not self.to:
                raise SettingError("an email channel needs sender and to", "sender", "to")
            if (self.username is None) != (self.password_env is None):
                raise SettingError(
                    "username and password_env go together", "username", "password_env"
                )
        if self.type == "command" and not self.command:
            raise SettingError(
                'a command channel needs command (a program and its arguments: ["/path", ...])',
                "command",
            )
        return self


def check_channel_url(url: str) -> str:
    """``url`` if it is an http(s) URL without user information, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {configfile.show(url)}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL carries user information (user:password@); not allowed")
    return url


class NotifySettings(Section):
    """``[notify]``: channels, default rules, and how deliveries are paced."""

    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    default: dict[str, Any] = Field(default_factory=dict)
    max_per_minute: int = Field(10, ge=1, le=10_000)
    check_interval: float = Field(5.0, ge=0.05, le=3600)
    retry_initial_seconds: float = Field(10.0, ge=0.05, le=3600)
    retry_max_seconds: float = Field(600.0, ge=0.05, le=86_400)
    give_up_after_seconds: float = Field(86_400.0, ge=1, le=30 * 86_400)
    output_lines: int = Field(20, ge=0, le=500)
    http_allow: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        from schedd.alerts.rules import CHANNEL_NAME

        for name in value:
            if not CHANNEL_NAME.match(name):
                raise ValueError(f"{name!r} is not a channel name (letters, digits, . _ -)")
        return value

    @field_validator("http_allow")
    @classmethod
    def _http_allow(cls, value: list[str]) -> list[str]:
        return unique([check_allow_entry(entry) for entry in value])

    @model_validator(mode="after")
    def _rules_name_channels(self) -> Self:
        from schedd.alerts.rules import parse_rules

        try:
            rules = parse_rules(self.default)
        except ValueError as exc:
            raise SettingError(str(exc), "default") from None
        unknown = sorted(rules.channel_names() - self.channels.keys())
        if unknown:
            raise SettingError(f"names a channel that is not configured: {unknown[0]}", "default")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise SettingError(
                "retry_max_seconds must be at least retry_initial_seconds",
                "retry_max_seconds",
                "retry_initial_seconds",
            )
        return self
