"""The OpenAPI document as this server behaves under its configuration.

FastAPI derives the document from the routes and models alone. What depends on the
configuration or on middleware is added here, so that the document and the server
agree (the schemathesis test holds them to it):

- every authenticated operation may answer 429 with ``Retry-After``
  (``api.auth_failures_per_minute``), every operation with a body 413 (the body cap);
- ``/metrics`` asks for a credential only when ``observability.metrics_auth`` is on;
- a token's ``ttl_seconds`` is at most ``auth.token_ttl_seconds``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schedd.config import Settings

ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
TOO_MANY = {
    "description": "too many failed authentications from this address or for this key",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before authenticating again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": ERROR_BODY,
}
TOO_LARGE = {"description": "request body too large", "content": ERROR_BODY}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def adjust(doc: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``doc`` (FastAPI's) adjusted to ``settings`` in place (see the module
    docstring); adjusting twice changes nothing."""
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if path == "/metrics" and not settings.observability.metrics_auth:
                operation.pop("security", None)
            if operation.get("security"):
                responses.setdefault("429", TOO_MANY)
            if "requestBody" in operation:
                responses.setdefault("413", TOO_LARGE)
    ttl = (
        doc.get("components", {})
        .get("schemas", {})
        .get("TokenCreate", {})
        .get("properties", {})
        .get("ttl_seconds", {})
    )
    for branch in ttl.get("anyOf", [ttl]):
        if branch.get("type") == "integer":
            branch["maximum"] = settings.auth.token_ttl_seconds
    return doc


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the adjusted document as ``/openapi.json`` (FastAPI builds and caches
    it on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return adjust(generate(), settings)

    app.openapi = openapi  # type: ignore[method-assign]
