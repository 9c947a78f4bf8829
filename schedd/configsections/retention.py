"""``[retention]``: how long runs, system logs and audit entries are kept."""

from __future__ import annotations

from pydantic import Field

from schedd.configsections.base import Section


class RetentionSettings(Section):
    runs_days: float = Field(30.0, ge=0, le=36_500)
    system_logs_days: float = Field(14.0, ge=0, le=36_500)
    audit_days: float = Field(90.0, ge=0, le=36_500)
