"""What the sections share: the Section base model (no booleans as numbers), the
case-insensitive and de-duplicating validators, and the seed's environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
    field_validator,
)

from schedd import configfile

# The seed's variables, in the order they are applied (a later one wins). RABBITMQ_URL
# and REDIS_URL are applied separately: each only when it names the chosen broker.
SEED_VARIABLES: dict[str, str] = {
    "DATABASE_URL": "database.url",
    "DATABASE_MAX_CONNECTIONS": "database.max_connections",
    "API_HOST": "api.host",
    "API_PORT": "api.port",
    "JWT_SECRET": "auth.jwt_secret",
    "LOG_FORMAT": "observability.log_format",
    "LOG_LEVEL": "observability.log_level",
    "SCHEDD_LOG": "observability.log_level",
}


def env_of(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context
    if isinstance(context, dict) and "env" in context:
        env: Mapping[str, str] = context["env"]
        return env
    return os.environ


def url_scheme(url: str) -> str:
    """The URL's scheme, lower case; ValueError when ``url`` is not a URL."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"not a URL: {configfile.show(url)}")
    return scheme.lower()


def seconds_text(value: float) -> str:
    return f"{value:g}s"


def unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# Choices are matched case-insensitively; repeated list items are dropped.
Lowered = BeforeValidator(_lower)
Unique = AfterValidator(unique)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1; in a config file that is a mistake, not a number.
        if isinstance(value, bool) and info.field_name:
            types = set(configfile.type_parts(cls.model_fields[info.field_name].annotation))
            if bool not in types and types & {int, float}:
                kind = "an integer" if int in types else "a number"
                raise ValueError(f"expected {kind}, got {configfile.show(value)}")
        return value
