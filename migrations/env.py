"""Alembic environment for sched.

Used two ways: by schedd (``schedd migrate``, and the embedded database migrating
itself on start), which passes an open connection in ``config.attributes``; and by
developers running ``alembic`` from the repository root with ``alembic.ini`` and
``DATABASE_URL``.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

import schedd.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from schedd.db import normalize_url

target_metadata = SQLModel.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = os.environ.get("DATABASE_URL") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set DATABASE_URL (or sqlalchemy.url in alembic.ini)")
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        _run(conn)
