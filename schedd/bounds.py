"""Bounds on the free-form parts of request bodies (metadata, arguments), stated once
for validation and for the OpenAPI descriptions that document them."""

from __future__ import annotations

import json
from typing import Any

MAX_ARGUMENTS = 256
MAX_ARGUMENT_BYTES = 65_536  # all arguments of a task or run together, UTF-8
MAX_JSON_DEPTH = 32
MAX_METADATA_BYTES = 65_536  # metadata as compact JSON, UTF-8
METADATA_DOC = (
    f"Any JSON object, at most {MAX_JSON_DEPTH} levels deep and "
    f"{MAX_METADATA_BYTES} bytes as compact JSON."
)
ARGUMENTS_DOC = f"At most {MAX_ARGUMENTS} arguments of {MAX_ARGUMENT_BYTES} bytes together."


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``{}`` 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """A task's metadata within the documented bounds (ValueError otherwise): a deeper
    document would pass the database and then fail every response that shows it."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes as JSON, over the limit of {MAX_METADATA_BYTES}")
    return value


def check_arguments(values: list[str]) -> list[str]:
    size = sum(len(value.encode("utf-8", "surrogatepass")) for value in values)
    if size > MAX_ARGUMENT_BYTES:
        raise ValueError(f"{size} bytes together, over the limit of {MAX_ARGUMENT_BYTES}")
    return values
