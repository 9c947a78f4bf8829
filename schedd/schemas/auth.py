"""API keys, tokens, who-am-I and the scopes they carry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schedd.schemas.common import IsoDateTime, json_numbers, published

SCOPES = (
    "task.read",
    "task.write",
    "task.execute",
    "task.delete",
    "worker.read",
    "worker.write",
    "system.read",
    "system.write",
)
Scope = Annotated[str, published(enum=list(SCOPES))]


class ApiKeyCreate(BaseModel):
    """Body of POST /api/apikeys. Scopes default to none; at most the caller's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=list, max_length=len(SCOPES))
    expires_at: IsoDateTime | None = None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        return check_scopes(value)


class ApiKeyRead(BaseModel):
    """An API key as lists show it: never the key, only its first characters."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """The response that creates a key: the only time the key itself is shown."""

    key: str


class TokenCreate(BaseModel):
    """Body of POST /api/tokens. Scopes default to all of the caller's."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] | None = Field(default=None, max_length=len(SCOPES))
    _numbers = field_validator("ttl_seconds", mode="before")(json_numbers)

    # The maximum published is auth.token_ttl_seconds (schedd/api/openapi.py).
    ttl_seconds: int | None = Field(default=None, ge=1, le=31_536_000)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_scopes(value)


class TokenRead(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_at: datetime
    scopes: list[str]


class WhoAmI(BaseModel):
    actor: str
    kind: str  # "api_key" or "token"
    key_id: int
    key_name: str
    scopes: list[str]
    expires_at: datetime | None


def check_scopes(values: list[str]) -> list[str]:
    unknown = [s for s in values if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r} (expected any of {', '.join(SCOPES)})")
    return [s for s in SCOPES if s in values]  # canonical order, no repeats
