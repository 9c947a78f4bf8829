"""API keys and tokens: who is calling, and with which scopes.

- An API key is ``scheduler_`` + 32 random letters and digits. Only its SHA-256 hash is
  stored (the key is random, so a plain hash is enough: there is nothing to guess), and
  the hash is compared with :func:`hmac.compare_digest`. Revoking a key takes effect at
  the next request: every request looks the key up.
- A token is a JWT (HS256, ``exp`` required, the algorithm pinned) minted by a key or
  by another token. It names its root key (``key`` claim), and the key is looked up on
  every request too, so revoking a key also ends every token minted from it.
- Neither can mint a key or token with a scope it does not have itself, nor a token
  that outlives it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
import sqlalchemy as sa
from sqlmodel import Session, col, select

from schedd.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from schedd.models import ApiKey
from schedd.schemas import SCOPES, ApiKeyCreated, ApiKeyRead, Page, TokenRead, WhoAmI
from schedd.services import audit
from schedd.services.paging import DEFAULT_PAGE_SIZE, fetch_page
from schedd.types import utcnow

log = logging.getLogger("schedd.api.auth")

KEY_PREFIX = "scheduler_"
KEY_RANDOM_CHARS = 32
KEY_ALPHABET = string.ascii_letters + string.digits
SHOWN_PREFIX = len(KEY_PREFIX) + 4  # what lists show of a key: "scheduler_a1b2"
ALGORITHM = "HS256"
ISSUER = "sched"
LAST_USED_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its audit name, scopes and the key behind it."""

    actor: str
    kind: str  # "api_key" or "token"
    key_id: int
    key_name: str
    scopes: frozenset[str]
    expires_at: datetime | None

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def whoami(self) -> WhoAmI:
        return WhoAmI(
            actor=self.actor,
            kind=self.kind,
            key_id=self.key_id,
            key_name=self.key_name,
            scopes=[s for s in SCOPES if s in self.scopes],
            expires_at=self.expires_at,
        )


def generate_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_RANDOM_CHARS))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


def _check_subset(requested: list[str], held: frozenset[str], what: str) -> None:
    extra = [s for s in requested if s not in held]
    if extra:
        raise Forbidden(
            f"cannot {what} with scope(s) the caller does not have: {', '.join(extra)}",
            field="scopes",
        )


def create_api_key(
    session: Session,
    name: str,
    scopes: list[str],
    *,
    creator: Principal | None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> ApiKeyCreated:
    """Store a new key and return it, with the key itself shown this once.

    ``creator`` None is the system itself (first start, ``schedctl --db``): any scopes.
    """
    now = now or utcnow()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"scopes: unknown scope {unknown[0]!r}", field="scopes")
    if creator is not None:
        _check_subset(scopes, creator.scopes, "create a key")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("expires_at: must include a time zone (e.g. Z)", field="expires_at")
        if expires_at <= now:
            raise InvalidInput("expires_at: must be in the future", field="expires_at")
    key = generate_key()
    row = ApiKey(
        name=name,
        prefix=key[:SHOWN_PREFIX],
        key_hash=hash_key(key),
        scopes=[s for s in SCOPES if s in scopes],
        created_at=now,
        created_by=creator.actor if creator else "system",
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        creator.actor if creator else None,
        "apikey.create",
        f"apikey:{row.id}",
        detail={"name": name, "scopes": row.scopes},
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(row).model_dump(), key=key)


def list_api_keys(
    session: Session,
    *,
    include_revoked: bool = False,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[ApiKeyRead]:
    query = select(ApiKey)
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    rows, total = fetch_page(session, query, col(ApiKey.id), page, size)
    items = [ApiKeyRead.model_validate(r) for r in rows]
    return Page[ApiKeyRead](items=items, total=total, page=page, size=size)


def revoke_api_key(
    session: Session, key_id: int, *, actor: Principal | None, now: datetime | None = None
) -> ApiKeyRead:
    """Revoke a key at once (its tokens too). Revoking a revoked key changes nothing.

    A caller cannot revoke a key that holds scopes it lacks itself (Forbidden): a
    narrow key must not be able to lock the administrator out.
    """
    now = now or utcnow()
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if actor is not None:
        _check_subset(key.scopes, actor.scopes, "revoke a key")
    result = session.execute(
        sa.update(ApiKey)
        .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    changed = cast("sa.CursorResult[Any]", result).rowcount
    audit.record(
        session,
        actor.actor if actor else None,
        "apikey.revoke",
        f"apikey:{key_id}",
        detail={"name": key.name, "changed": bool(changed)},
    )
    session.refresh(key)
    return ApiKeyRead.model_validate(key)


api_keys = ApiKey.__table__  # type: ignore[attr-defined]
# What authentication needs of a key: one Core query on an index, no ORM objects (it
# runs on every request).
_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.key_hash,
    api_keys.c.scopes,
    api_keys.c.revoked_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
)
_BY_HASH = sa.select(*_KEY_COLUMNS).where(api_keys.c.key_hash == sa.bindparam("digest"))
_BY_ID = sa.select(*_KEY_COLUMNS).where(api_keys.c.id == sa.bindparam("key_id"))


def _usable_key(row: Any, now: datetime) -> Any:
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("API key expired")
    return row


def authenticate_key(
    session: Session, credential: str, *, now: datetime | None = None
) -> Principal:
    """The principal of an API key; Unauthorized for an unknown, revoked or expired key."""
    now = now or utcnow()
    digest = hash_key(credential)
    row = session.execute(_BY_HASH, {"digest": digest}).first()
    # The lookup matched on the hash; the constant-time compare keeps the final decision
    # free of timing differences however the index compares strings.
    if not hmac.compare_digest(row.key_hash if row else _DUMMY_HASH, digest):
        row = None
    row = _usable_key(row, now)
    _touch(session, row.id, row.last_used_at, now)
    return Principal(
        actor=f"key:{row.id}:{row.name}",
        kind="api_key",
        key_id=row.id,
        key_name=row.name,
        scopes=frozenset(row.scopes),
        expires_at=row.expires_at,
    )


def _touch(session: Session, key_id: int, last_used: datetime | None, now: datetime) -> None:
    """Record use, at most once a minute per key (one guarded UPDATE, no read-modify)."""
    if last_used is not None and now - last_used < LAST_USED_EVERY:
        return
    stale = now - LAST_USED_EVERY
    session.execute(
        sa.update(api_keys)
        .where(
            api_keys.c.id == key_id,
            sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < stale),
        )
        .values(last_used_at=now)
    )


def issue_token(
    session: Session,
    secret: str,
    caller: Principal,
    *,
    scopes: list[str] | None,
    ttl_seconds: int | None,
    max_ttl_seconds: int,
    now: datetime | None = None,
) -> TokenRead:
    """A JWT for ``caller`` with ``scopes`` (default: all of the caller's).

    Its lifetime is ``ttl_seconds`` (default and ceiling ``max_ttl_seconds``), cut to
    the caller's own expiry: a token never outlives what minted it.
    """
    now = now or utcnow()
    wanted = sorted(caller.scopes, key=SCOPES.index) if scopes is None else list(scopes)
    _check_subset(wanted, caller.scopes, "issue a token")
    ttl = max_ttl_seconds if ttl_seconds is None else ttl_seconds
    if ttl > max_ttl_seconds:
        raise InvalidInput(
            f"ttl_seconds: at most {max_ttl_seconds} (auth.token_ttl_seconds)",
            field="ttl_seconds",
        )
    expires = now + timedelta(seconds=ttl)
    if caller.expires_at is not None:
        expires = min(expires, caller.expires_at)
    expires = expires.replace(microsecond=0)  # JWT times are whole seconds
    claims = {
        "iss": ISSUER,
        "sub": caller.actor,
        "key": caller.key_id,
        "scopes": wanted,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    audit.record(
        session,
        caller.actor,
        "token.issue",
        f"apikey:{caller.key_id}",
        detail={"scopes": wanted, "expires_at": expires.isoformat()},
    )
    return TokenRead(token=token, expires_at=expires, scopes=wanted)


def authenticate_token(
    session: Session, secret: str, token: str, *, now: datetime | None = None
) -> Principal:
    """The principal of a JWT; Unauthorized when it is malformed, forged, expired,
    without ``exp``, has unknown scopes, or its key was revoked."""
    now = now or utcnow()
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "key", "scopes"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        # The reason (bad signature, missing claim) helps the caller; it never echoes
        # the token itself.
        raise Unauthorized(f"invalid token: {_reason(exc)}") from None
    scopes = claims["scopes"]
    key_id = claims["key"]
    subject = claims["sub"]
    if (
        not isinstance(scopes, list)
        or not all(isinstance(s, str) and s in SCOPES for s in scopes)
        or not isinstance(key_id, int)
        or not isinstance(subject, str)
    ):
        raise Unauthorized("invalid token: malformed claims")
    key = _usable_key(session.execute(_BY_ID, {"key_id": key_id}).first(), now)
    # A token holds at most its key's scopes, even if the key was narrowed since.
    held = frozenset(scopes) & frozenset(key.scopes)
    return Principal(
        actor=subject,
        kind="token",
        key_id=key_id,
        key_name=key.name,
        scopes=held,
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
    )


def _reason(exc: jwt.InvalidTokenError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def authenticate(
    session: Session, secret: str, credential: str, *, now: datetime | None = None
) -> Principal:
    """The principal of a bearer credential: an API key or a token."""
    if looks_like_key(credential):
        return authenticate_key(session, credential, now=now)
    return authenticate_token(session, secret, credential, now=now)


def has_keys(session: Session) -> bool:
    return session.exec(select(ApiKey.id).limit(1)).first() is not None
