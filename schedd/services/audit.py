"""The audit log: every mutation records who did what to which object, and the outcome."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from schedd.models import AuditEntry
from schedd.types import utcnow


def record(
    session: Session,
    actor: str | None,
    action: str,
    target: str,
    *,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry to the session's transaction (it commits with the change)."""
    session.add(
        AuditEntry(
            time=utcnow(),
            actor=actor or "system",
            action=action,
            target=target,
            outcome=outcome,
            detail=detail or {},
        )
    )
