"""``[daemon]``: the data directory and the roles a schedd process takes."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from schedd.configfile import default_data_dir, expand_path
from schedd.configsections.base import Section, Unique, env_of

Role = Literal["api", "scheduler", "worker"]
ROLES: tuple[Role, ...] = ("api", "scheduler", "worker")


class DaemonSettings(Section):
    data_dir: str = Field(default_factory=lambda: str(default_data_dir(os.environ)))
    roles: Annotated[list[Role], Unique] = Field(default_factory=lambda: list(ROLES), min_length=1)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return expand_path(value, env_of(info))
