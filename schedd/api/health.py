"""The health check: can this process reach its database and its broker?"""

from __future__ import annotations

import logging

from schedd.api.deps import ApiState
from schedd.schemas import HealthRead
from schedd.services import system

log = logging.getLogger("schedd.api.health")


def check_health(state: ApiState) -> HealthRead:
    """The shared check (:func:`schedd.services.system.check_health`) of this
    process's database and broker; why a component did not answer goes to the log."""
    health = system.check_health(state.db, state.broker)
    for component, reason in health.reasons.items():
        log.warning("health: %s unavailable: %s", component, reason)
    return health.report
