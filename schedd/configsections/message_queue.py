"""``[message_queue]``: the broker, its URL and namespace (derived from the database
when not given)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from schedd.configfile import SettingError
from schedd.configsections.base import Lowered, Section, url_scheme

BROKER_SCHEMES = {"rabbitmq": ("amqp", "amqps"), "redis": ("redis", "rediss", "unix")}
BROKER_VARIABLES = {"rabbitmq": "RABBITMQ_URL", "redis": "REDIS_URL"}
NAMESPACE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def default_namespace(database_url: str) -> str:
    """The broker namespace of a deployment whose database is ``database_url``.

    PostgreSQL: the database's name (``sched`` keeps the names of earlier versions), so
    every process of a deployment agrees however it reaches the server. SQLite: the
    file's name and a hash of its resolved path (two embedded deployments on one host
    both call theirs sched.db). Characters a name cannot hold become ``_``.
    """
    import hashlib

    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = url.database or ""
    if url.get_backend_name() == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            return "sched"
        path = Path(name).expanduser().resolve()
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        name = f"{path.stem}-{digest}"
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]
    return cleaned or "sched"


class MessageQueueSettings(Section):
    type: Annotated[Literal["database", "rabbitmq", "redis"], Lowered] = "database"
    url: str = ""
    claim_idle_seconds: float = Field(30.0, ge=1, le=86_400)
    # Prefix of every queue, stream and consumer group; "" derives it from the database.
    namespace: str = ""

    @field_validator("namespace")
    @classmethod
    def _usable_namespace(cls, value: str) -> str:
        if value and not re.match(NAMESPACE_PATTERN, value):
            raise ValueError(
                f"not a namespace: {value!r} (1-64 letters, digits, '_' or '-'; "
                "empty derives it from the database)"
            )
        return value

    @model_validator(mode="after")
    def _url_fits_type(self) -> Self:
        # With the database broker the URL is ignored, so switching type back to
        # "database" (for instance by SCHEDD_MESSAGE_QUEUE__TYPE) needs no other edit.
        # A missing URL is the roles' requirement, not the value's: schedd.preflight
        # refuses it before a start (and `schedd migrate` or schedctl need no broker).
        if self.type == "database" or not self.url:
            return self
        allowed = BROKER_SCHEMES[self.type]
        try:
            scheme = url_scheme(self.url)
        except ValueError as exc:
            raise SettingError(str(exc), "url") from None
        if scheme not in allowed:
            raise SettingError(
                f"unsupported scheme '{scheme}' for type '{self.type}'"
                f" (expected {', '.join(allowed[:-1])} or {allowed[-1]})",
                "url",
                "type",
            )
        return self
