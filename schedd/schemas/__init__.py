"""API request and response models, shared by the HTTP API and `schedctl --db`, one
module a resource: common (list page, error body, `validated`), tasks, runs (and
workers), auth, system, notify. Importers take the names from here.

Request models forbid unknown fields, so a misspelt field is an error that names it
instead of a silently ignored value.
"""

from __future__ import annotations

from schedd.schemas.auth import (
    SCOPES,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    Scope,
    TokenCreate,
    TokenRead,
    WhoAmI,
    check_scopes,
)
from schedd.schemas.common import (
    MAX_ID,
    ErrorBody,
    IsoDateTime,
    Page,
    invalid_input_from,
    validated,
)
from schedd.schemas.notify import ChannelRead, ChannelTestRead, DeliveryRead
from schedd.schemas.runs import HeartbeatIn, OutputRead, RunRead, WorkerRead
from schedd.schemas.system import AuditRead, HealthRead, RunCounts, StatsRead, SystemLogRead
from schedd.schemas.tasks import (
    ENVIRONMENT_SCHEMA,
    MAX_COMMAND,
    MAX_ENV_BYTES,
    MAX_ENV_NAME,
    MAX_ENV_VARS,
    MAX_MEMORY_MB,
    MAX_RETRIES,
    MAX_RETRY_DELAY,
    MAX_TAG,
    MAX_TIMEOUT,
    NOTIFY_DOC,
    NOTIFY_KEYS,
    NOTIFY_SCHEMA,
    READ_ONLY_TASK_FIELDS,
    FireTimes,
    Tag,
    TaskCreate,
    TaskCreated,
    TaskId,
    TaskRead,
    TaskUpdate,
    TriggerIn,
    check_notify,
)

__all__ = [
    "ENVIRONMENT_SCHEMA",
    "MAX_COMMAND",
    "MAX_ENV_BYTES",
    "MAX_ENV_NAME",
    "MAX_ENV_VARS",
    "MAX_ID",
    "MAX_MEMORY_MB",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "MAX_TAG",
    "MAX_TIMEOUT",
    "NOTIFY_DOC",
    "NOTIFY_KEYS",
    "NOTIFY_SCHEMA",
    "READ_ONLY_TASK_FIELDS",
    "SCOPES",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyRead",
    "AuditRead",
    "ChannelRead",
    "ChannelTestRead",
    "DeliveryRead",
    "ErrorBody",
    "FireTimes",
    "HealthRead",
    "HeartbeatIn",
    "IsoDateTime",
    "OutputRead",
    "Page",
    "RunCounts",
    "RunRead",
    "Scope",
    "StatsRead",
    "SystemLogRead",
    "Tag",
    "TaskCreate",
    "TaskCreated",
    "TaskId",
    "TaskRead",
    "TaskUpdate",
    "TokenCreate",
    "TokenRead",
    "TriggerIn",
    "WhoAmI",
    "WorkerRead",
    "check_notify",
    "check_scopes",
    "invalid_input_from",
    "validated",
]
