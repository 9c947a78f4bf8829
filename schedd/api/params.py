"""Query and path parameter types shared by the routes, with their bounds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from schedd.schemas import MAX_ID, IsoDateTime
from schedd.services.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = ["MAX_ID", "After", "Before", "IsoDateTime", "KeyId", "PageNo", "PageSize", "RunId"]

PageNo = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")]
PageSize = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_PAGE_SIZE,
        description=f"Items per page (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}).",
    ),
]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="Run id.")]
KeyId = Annotated[int, Path(ge=1, le=MAX_ID, description="API key id.")]
WorkerId = Annotated[str, Path(min_length=1, max_length=200, description="Worker id.")]
After = Annotated[IsoDateTime | None, Query(description="At or after (ISO 8601).")]
Before = Annotated[IsoDateTime | None, Query(description="Until (ISO 8601).")]
