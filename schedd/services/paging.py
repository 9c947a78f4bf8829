"""Paging for list endpoints: page numbers from 1, bounded page size."""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from schedd.errors import InvalidInput

T = TypeVar("T")

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


def check_page(page: int, size: int) -> None:
    if page < 1:
        raise InvalidInput(f"page: must be 1 or more, got {page}", field="page")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"size: must be between 1 and {MAX_PAGE_SIZE}, got {size}", field="size")


def fetch_page(
    session: Session, query: sa.Select[Any], order_by: Any, page: int, size: int
) -> tuple[list[Any], int]:
    """Rows of one page of ``query`` (a select of one entity) and the total count;
    ``order_by`` is one ordering or a tuple of them."""
    check_page(page, size)
    total = session.execute(
        sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    order = order_by if isinstance(order_by, list | tuple) else (order_by,)
    rows = session.execute(query.order_by(*order).offset((page - 1) * size).limit(size))
    return list(rows.scalars()), total
