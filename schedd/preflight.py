"""What the roles need of the configuration, checked before anything starts.

The settings model checks each value on its own; some requirements depend on which
roles run: the broker's URL, the API's JWT secret outside the embedded default, a
worker's fence and interpreter (`schedd migrate` and `schedctl` need none of them).
`schedd run` checks them before it opens the database, and `schedd config check`
checks the same, so a check that passes means a start that will not stop on its
configuration.

Host state is not configuration: whether the worker's working directory exists yet is
checked by `schedd run` only (systemd creates the units' StateDirectory at start).
"""

from __future__ import annotations

from collections.abc import Collection

from schedd.config import BROKER_VARIABLES, MIN_JWT_SECRET_BYTES, Settings
from schedd.configsections import JWT_SECRET_HINT
from schedd.errors import ConfigError


def require_jwt_secret(settings: Settings) -> None:
    """Outside the embedded default the API needs a configured secret (its strength is
    checked with the value); the embedded one generates and stores its own."""
    if settings.auth.jwt_secret is None and not settings.is_embedded:
        raise ConfigError(
            settings.source or "configuration",
            "auth.jwt_secret",
            f"the API needs a JWT secret of at least {MIN_JWT_SECRET_BYTES} bytes when the "
            f"database is not the embedded SQLite: set JWT_SECRET ({JWT_SECRET_HINT})",
        )


def require_shared_database(settings: Settings) -> None:
    """Several API processes need PostgreSQL: SQLite has one writer at a time, so more
    processes would only queue for its lock (the embedded default serves from one)."""
    if settings.api.processes > 1 and settings.database.is_sqlite:
        raise ConfigError(
            settings.source or "configuration",
            "api.processes",
            f"{settings.api.processes} API processes need PostgreSQL; SQLite (the "
            "embedded default) serves the API from one process",
        )


def require_broker_url(settings: Settings) -> None:
    """A RabbitMQ or Redis broker needs its URL (the scheme is checked with the value)."""
    queue = settings.message_queue
    if queue.type != "database" and not queue.url:
        raise ConfigError(
            settings.source or "configuration",
            "message_queue.url",
            f"required when message_queue.type is '{queue.type}'"
            f" (set it, or {BROKER_VARIABLES[queue.type]})",
        )


def check(settings: Settings, roles: Collection[str], *, host: bool = True) -> None:
    """Raise the ConfigError that would stop ``roles`` from starting; ``host`` also
    checks this host's state (directories that must exist)."""
    if roles:  # every role hands runs over through the broker
        require_broker_url(settings)
    if "api" in roles:
        require_jwt_secret(settings)
        require_shared_database(settings)
    if "worker" in roles:
        from schedd.worker.role import check_settings

        check_settings(settings, host=host)
