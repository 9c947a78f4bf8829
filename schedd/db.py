"""Engine and session factory, dialect capabilities, and schema migration.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE`` so two processes queue for the write lock
instead of failing with "database is locked" half-way through a transaction.
PostgreSQL goes through psycopg 3 with a pool sized by ``database.max_connections``,
whose connections are pinged before use only after they sat idle. The daemon's
connections carry :class:`SessionLimits` (server-side timeouts) and an
``application_name`` naming the process, so a stalled process cannot hold locks for
long and ``pg_stat_activity`` shows whose session is whose.
"""

from __future__ import annotations

import ast
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from schedd.errors import InvalidInput, SchedError, Unavailable, first_line
from schedd.redact import redact_url

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from schedd.configsections import DatabaseSettings

# Alembic (and Mako) are imported only to migrate: a daemon or `schedctl --db` that
# just checks the schema reads the version table and the scripts' revision lines.
_REVISION_LINE = re.compile(r"^(down_)?revision\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL for a user's database URL (postgres:// -> psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass
class Database:
    """An engine plus what the rest of the code needs to know about its dialect."""

    engine: Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def supports_skip_locked(self) -> bool:
        return self.is_postgres

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def now(self) -> datetime:
        """The database's clock (heartbeat ages are judged by it, not by a host's)."""
        if self.is_postgres:
            with self.engine.connect() as conn:
                value = conn.execute(sa.text("SELECT now()")).scalar_one()
                return value.astimezone(UTC)
        # SQLite runs in this process: its clock is this host's.
        return datetime.now(UTC)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_path(url: sa.URL) -> str | None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return db


@dataclass(frozen=True)
class SessionLimits:
    """Server-side bounds of a PostgreSQL session, in seconds (0: no bound).

    A process stopped (SIGSTOP, a swapped-out host, a debugger) inside a transaction
    keeps its row locks until the server ends the session: other schedulers skip the
    locked tasks (``SKIP LOCKED``) and their fire times grow late, then missed.
    ``idle_in_transaction_session_timeout`` ends such a session (its transaction rolls
    back, its locks are released); ``lock_timeout`` bounds a wait for a lock, and
    ``statement_timeout`` a statement. What was rolled back was not committed, so the
    work is done again by whoever takes it next: nothing is lost or done twice.
    """

    idle_in_transaction_session_timeout: float = 10.0
    lock_timeout: float = 10.0
    statement_timeout: float = 120.0

    @classmethod
    def of(cls, database: DatabaseSettings) -> SessionLimits:
        """The limits configured in the ``[database]`` section."""
        return cls(
            idle_in_transaction_session_timeout=database.idle_in_transaction_session_timeout,
            lock_timeout=database.lock_timeout,
            statement_timeout=database.statement_timeout,
        )

    def options(self) -> str:
        """The libpq ``options`` string that sets them when a connection opens."""
        return " ".join(
            f"-c {name}={round(seconds * 1000)}"
            for name, seconds in (
                ("idle_in_transaction_session_timeout", self.idle_in_transaction_session_timeout),
                ("lock_timeout", self.lock_timeout),
                ("statement_timeout", self.statement_timeout),
            )
        )


def create_database(
    url: str,
    *,
    max_connections: int = 10,
    connection_timeout: float = 30.0,
    limits: SessionLimits | None = None,
    application_name: str | None = None,
) -> Database:
    """Build the engine for ``url`` (sqlite:///path or postgresql://...).

    ``limits`` and ``application_name`` apply to PostgreSQL connections only (SQLite
    runs in this process: its locks end with it)."""
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        return Database(_sqlite_engine(sa_url, connection_timeout))
    if sa_url.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {"connect_timeout": max(1, int(connection_timeout))}
        if limits is not None:
            connect_args["options"] = limits.options()
        if application_name is not None:
            connect_args["application_name"] = application_name[:63]
        engine = sa.create_engine(
            sa_url,
            pool_size=max_connections,
            max_overflow=0,
            pool_timeout=connection_timeout,
            connect_args=connect_args,
        )
        _ping_idle_connections(engine)
        return Database(engine)
    raise Unavailable(f"unsupported database backend {sa_url.get_backend_name()!r}")


# A pooled connection unused for this long is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "sched_idle_since"


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled PostgreSQL connection before use, if it has been idle.

    ``pool_pre_ping`` pings at every checkout: a round trip (and two autocommit
    toggles) before every transaction, one round trip in five of an API read. A
    connection that has been idle (a quiet API, a database restarted or a firewall that
    drops idle connections meanwhile) is pinged; one back in the pool for less than
    PING_AFTER_IDLE_SECONDS is not: it answered a moment ago. A dead one is replaced
    by a new connection before the caller sees it. A connection that breaks during a
    transaction fails that transaction as before (503 from the API); SQLAlchemy then
    invalidates the connections pooled before it, so the next checkouts reconnect.
    """
    dialect = engine.dialect

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                # The pool replaces the connection and checks out again.
                raise sa.exc.DisconnectionError(first_line(exc)) from exc
            raise


def _create_private(path: Path) -> None:
    """Create a missing database file (and its directory) readable by its owner only:
    it holds run output and task commands. SQLite gives its -wal and -shm files the
    main file's mode. An existing file or directory keeps the mode it has."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_engine(sa_url: sa.URL, connection_timeout: float) -> Engine:
    path = _sqlite_path(sa_url)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if path is None:
        # One shared in-memory database for the whole process (tests).
        kwargs["poolclass"] = StaticPool
    else:
        _create_private(Path(path).expanduser())
    engine = sa.create_engine(sa_url, **kwargs)
    busy_ms = max(SQLITE_BUSY_TIMEOUT_MS, int(connection_timeout * 1000))

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if path is not None:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# --- migrations -------------------------------------------------------------------


class SchemaBehind(Unavailable):
    """The database schema is older than this version of sched needs."""


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the installed package, or, when schedd is
    imported from a checkout that was not installed (``python -m bench.X`` from the
    project root), the checkout's ``migrations/`` beside the package."""
    try:
        return Path(str(resources.files("schedd.migrations")))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / "migrations"
        if (checkout / "env.py").is_file():
            return checkout
        raise


def alembic_config(connection: sa.Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_revisions() -> dict[str, str | None]:
    """Each migration script's revision and its down_revision, read from the scripts'
    ``revision = "..."`` lines without importing Alembic (a test holds this to
    Alembic's own reading)."""
    found: dict[str, str | None] = {}
    for script in sorted((migrations_dir() / "versions").glob("*.py")):
        values = {
            bool(down): ast.literal_eval(value)
            for down, value in _REVISION_LINE.findall(script.read_text())
        }
        if False in values:
            found[values[False]] = values.get(True)
    return found


def head_revision() -> str:
    """The newest revision: the one no other script names as its down_revision."""
    known = script_revisions()
    below: set[str] = set()
    for down in known.values():  # a merge names several
        below.update(down if isinstance(down, tuple) else [down] if down else [])
    heads = sorted(set(known) - below)
    if len(heads) != 1:
        raise SchedError(f"the migration scripts have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(db: Database) -> str | None:
    """The revision the database's schema is at (Alembic's version table); None
    when it has no sched schema."""
    with db.engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if rows else None


def migrate(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema to ``revision``; returns (before, after) revisions."""
    from alembic import command

    before = current_revision(db)
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    return before, current_revision(db)


def downgrade(db: Database, revision: str = "base") -> None:
    from alembic import command

    with db.engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def revisions() -> list[str]:
    """Every revision id, oldest first (the history is linear: one head)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


@dataclass(frozen=True)
class DowngradePlan:
    current: str
    target: str | None  # None: base, no schema at all
    reverted: list[str]  # newest first, what the downgrade undoes


def plan_downgrade(db: Database, revision: str) -> DowngradePlan:
    """What downgrading to ``revision`` (an id, a unique prefix such as ``0004``, or
    ``base``) undoes; InvalidInput names a revision that is unknown or not below the
    current one. ``reverted`` is empty when the schema is already there."""
    known = revisions()
    target: str | None
    if revision == "base":
        target = None
    else:
        matches = [rev for rev in known if rev == revision] or [
            rev for rev in known if rev.startswith(revision)
        ]
        if len(matches) != 1:
            choices = ", ".join(["base", *known])
            what = "ambiguous" if matches else "unknown"
            raise InvalidInput(f"{what} revision {revision!r}: one of {choices}")
        target = matches[0]
    current = current_revision(db)
    if current is None:
        raise InvalidInput("the database has no sched schema: there is nothing to downgrade")
    if current not in known:
        raise SchemaBehind(
            f"the database schema is at revision {current}, which this version does not "
            "know; downgrade with the version that migrated it"
        )
    now, goal = known.index(current), (-1 if target is None else known.index(target))
    if goal > now:
        raise InvalidInput(f"revision {target} is above the current {current}: use `db upgrade`")
    return DowngradePlan(current, target, list(reversed(known[goal + 1 : now + 1])))


def check_schema(db: Database) -> None:
    """Raise SchemaBehind unless the database is at this code's head revision."""
    try:
        current = current_revision(db)
    except sa.exc.OperationalError as exc:
        raise Unavailable(f"cannot reach the database: {first_line(exc)}") from exc
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaBehind(
            "the database has no sched schema yet: run `schedd migrate` to create it"
        )
    if current not in script_revisions():
        raise SchemaBehind(
            f"the database schema is at revision {current}, which this schedd does not know "
            f"(a newer version migrated it); upgrade schedd"
        )
    raise SchemaBehind(
        f"the database schema is at revision {current} but this schedd needs {head}: "
        f"run `schedd migrate`"
    )


def describe_url(url: str) -> str:
    """The URL with any password hidden (user information and secret query items such
    as ``?password=``: :func:`schedd.redact.redact_url`), for logs and output."""
    try:
        return redact_url(make_url(normalize_url(url)).render_as_string(hide_password=True))
    except sa.exc.ArgumentError:
        return "<invalid database URL>"


def sqlite_file(url: str) -> str | None:
    """The file path of a SQLite URL, or None."""
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() != "sqlite":
        return None
    path = _sqlite_path(sa_url)
    return os.path.abspath(os.path.expanduser(path)) if path else None
