"""The dashboard's session, CSRF tokens and response headers.

- Signing in exchanges an API key for a short-lived token (the API's own JWT, at most
  :data:`SESSION_SECONDS` and ``auth.token_ttl_seconds``), kept in an HttpOnly,
  SameSite=Strict cookie scoped to ``/ui/`` (Secure when the request came over
  https). Every page authenticates it as the API authenticates a bearer token, so a
  revoked key ends its dashboard sessions too.
- Every form carries a CSRF token: for a session, an HMAC of the session token under
  the JWT secret (nothing to store, different for every session); for the sign-in
  form, an HMAC of a random nonce kept in its own short cookie. A POST whose token
  does not match, or whose ``Origin`` is another site, is refused before it acts.
- :class:`UiHeaders` gives every ``/ui/`` response a strict Content-Security-Policy
  (only this server's own scripts, styles and images; no inline script or style), no
  framing, no referrer to other sites, and ``no-store`` on pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedd.errors import Forbidden

SESSION_COOKIE = "sched_session"
SIGNIN_COOKIE = "sched_signin"
COOKIE_PATH = "/ui/"
SESSION_SECONDS = 3600
SIGNIN_SECONDS = 900
CSRF_FIELD = "csrf"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
NO_STORE = (b"cache-control", b"no-store")


def _mac(secret: str, purpose: str, value: str) -> str:
    message = f"{purpose}:{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def session_csrf(secret: str, session_token: str) -> str:
    """The CSRF token of the forms of one session."""
    return _mac(secret, "ui-csrf", session_token)


def new_signin_nonce() -> str:
    return secrets.token_urlsafe(24)


def signin_csrf(secret: str, nonce: str) -> str:
    """The CSRF token of the sign-in form shown with ``nonce`` in its cookie."""
    return _mac(secret, "ui-signin", nonce)


def check_csrf(expected: str | None, given: str | None) -> None:
    """Forbidden unless ``given`` is the expected token (constant-time compare)."""
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")


def check_origin(request: Request) -> None:
    """Forbidden when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser for same-origin forms
        return
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin.rstrip("/") != own:
        raise Forbidden(f"form posted from another origin ({urlsplit(origin).netloc or origin})")


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, seconds: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path on this server, nothing else."""
    if (
        target
        and target.startswith("/ui/")
        and not target.startswith("/ui//")
        and "\\" not in target
        and all(ch.isprintable() for ch in target)
    ):
        return target
    return "/ui/"


class UiHeaders:
    """Adds :data:`PAGE_HEADERS` to every response under ``/ui/`` (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/ui" or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith("/ui/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += PAGE_HEADERS
                if not static:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
