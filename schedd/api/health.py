"""The health check: can this process reach its database and its broker?"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from schedd import __version__
from schedd.api.deps import ApiState
from schedd.errors import SchedError, first_line
from schedd.schemas import HealthRead

log = logging.getLogger("schedd.api.health")


def check_health(state: ApiState) -> HealthRead:
    """``ok`` when both answer, ``degraded`` when only the database does,
    ``unavailable`` when the database does not (nothing works without it)."""
    database = "ok"
    try:
        with state.db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        log.warning("health: database unavailable: %s", first_line(exc))
        database = "unavailable"
    broker = "none"
    if state.broker is not None:
        try:
            state.broker.health()
            broker = "ok"
        except SchedError as exc:
            log.warning("health: broker unavailable: %s", exc)
            broker = "unavailable"
    if database != "ok":
        status = "unavailable"
    elif broker == "unavailable":
        status = "degraded"
    else:
        status = "ok"
    return HealthRead(status=status, database=database, broker=broker, version=__version__)
