"""``[database]``: the URL (SQLite or PostgreSQL) and the pool and session limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from schedd import configfile
from schedd.configsections.base import Section, url_scheme

DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgres")


def default_database_url(data_dir: str | Path) -> str:
    """The embedded database: ``sqlite:///<data_dir>/sched.db``."""
    return f"sqlite:///{Path(data_dir) / 'sched.db'}"


class DatabaseSettings(Section):
    url: str
    max_connections: int = Field(10, ge=1, le=1000)
    connection_timeout: float = Field(30.0, gt=0, le=3600)
    # PostgreSQL only, on the roles' connections (schedd.db.SessionLimits); 0 is off.
    idle_in_transaction_session_timeout: float = Field(10.0, ge=0, le=86_400)
    lock_timeout: float = Field(10.0, ge=0, le=86_400)
    statement_timeout: float = Field(120.0, ge=0, le=86_400)

    @field_validator("url")
    @classmethod
    def _supported_scheme(cls, url: str) -> str:
        scheme = url_scheme(url)
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported scheme '{scheme}' (expected sqlite or postgresql)")
        # Imported here: schedctl loads settings without otherwise needing SQLAlchemy.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except (ArgumentError, ValueError):
            # SQLAlchemy's message may quote the URL, password included.
            raise ValueError(
                f"cannot parse {configfile.show(url)} (check the port and percent-encoding)"
            ) from None
        return url

    @property
    def is_sqlite(self) -> bool:
        return url_scheme(self.url).startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        """``url`` with ``postgres://`` and ``postgresql://`` pinned to psycopg 3."""
        scheme, _, rest = self.url.partition("://")
        if scheme.lower() in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        return self.url
