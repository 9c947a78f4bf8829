"""Who is looking at the dashboard: the signed-in principal, from the session cookie.

The dependencies here are the dashboard's counterpart of :mod:`schedd.api.deps`'s
scope dependencies: the same token check, the same scopes, enforced on the server
for every page and every action; templates only hide what the viewer cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request

from schedd.api.deps import DbSession, State
from schedd.errors import Forbidden, SchedError, Unauthorized
from schedd.services import auth
from schedd.services.auth import Principal
from schedd.ui import security

MAX_FORM_FIELDS = 200


class SignInRequired(SchedError):
    """No valid session: the browser is sent to the sign-in page (not an error page)."""

    code = "unauthorized"

    def __init__(self, message: str, next_path: str) -> None:
        super().__init__(message)
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    csrf: str

    def can(self, scope: str) -> bool:
        return self.principal.has(scope)

    def require(self, scope: str) -> None:
        if not self.can(scope):
            raise Forbidden(f"this needs the scope {scope}, which your key does not have")


def _current(request: Request, state: State, session: DbSession) -> Viewer:
    token = request.cookies.get(security.SESSION_COOKIE)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        here = request.headers.get("referer", "/ui/")
    if not token:
        raise SignInRequired("sign in to continue", here)
    try:
        principal = auth.authenticate_token(session, state.jwt_secret, token)
    except Unauthorized as exc:
        raise SignInRequired(f"your session ended ({exc.message}); sign in again", here) from None
    request.state.principal = principal
    return Viewer(principal, security.session_csrf(state.jwt_secret, token))


CurrentViewer = Annotated[Viewer, Depends(_current)]


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (first value of each field)."""
    body = await request.body()
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise Forbidden("the form could not be read") from None
    return {name: values[0] for name, values in fields.items()}


Form = Annotated[dict[str, str], Depends(read_form)]


def _acting(request: Request, viewer: CurrentViewer, form: Form) -> Viewer:
    """The viewer of a POST whose CSRF token and origin check out."""
    security.check_origin(request)
    security.check_csrf(viewer.csrf, form.get(security.CSRF_FIELD))
    return viewer


ActingViewer = Annotated[Viewer, Depends(_acting)]


def signin_location(next_path: str, message: str | None = None) -> str:
    location = "/ui/signin?next=" + quote(security.safe_next(next_path), safe="")
    if message:
        location += "&reason=" + quote(message, safe="")
    return location
