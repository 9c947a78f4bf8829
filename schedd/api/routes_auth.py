"""/api/apikeys, /api/tokens, /api/whoami: credentials and who holds them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from schedd.api.deps import Authenticated, DbSession, Router, State, SystemReader, SystemWriter
from schedd.api.errors import ERROR_RESPONSES
from schedd.api.params import KeyId, PageNo, PageSize
from schedd.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    Page,
    TokenCreate,
    TokenRead,
    WhoAmI,
)
from schedd.services import auth

router = Router(tags=["auth"], responses=ERROR_RESPONSES)


@router.post("/api/apikeys", status_code=201, name="apikey.create")
def create_api_key(body: ApiKeyCreate, session: DbSession, caller: SystemWriter) -> ApiKeyCreated:
    """Create a key with at most the caller's scopes. The key is in this response only."""
    return auth.create_api_key(
        session, body.name, body.scopes, creator=caller, expires_at=body.expires_at
    )


@router.get("/api/apikeys", name="apikey.list")
def list_api_keys(
    session: DbSession,
    _: SystemReader,
    page: PageNo = 1,
    size: PageSize = 50,
    include_revoked: Annotated[bool, Query()] = False,
) -> Page[ApiKeyRead]:
    return auth.list_api_keys(session, include_revoked=include_revoked, page=page, size=size)


@router.delete(
    "/api/apikeys/{key_id}", status_code=204, response_class=Response, name="apikey.revoke"
)
def revoke_api_key(key_id: KeyId, session: DbSession, caller: SystemWriter) -> None:
    """Revoke a key; it and every token minted from it stop working at once."""
    auth.revoke_api_key(session, key_id, actor=caller)


@router.post("/api/tokens", status_code=201, name="token.issue")
def issue_token(
    body: TokenCreate, state: State, session: DbSession, caller: Authenticated
) -> TokenRead:
    """A JWT with at most the caller's scopes, living at most auth.token_ttl_seconds."""
    return auth.issue_token(
        session,
        state.jwt_secret,
        caller,
        scopes=body.scopes,
        ttl_seconds=body.ttl_seconds,
        max_ttl_seconds=state.settings.auth.token_ttl_seconds,
    )


@router.get("/api/whoami", name="auth.whoami")
def whoami(caller: Authenticated) -> WhoAmI:
    return caller.whoami()
