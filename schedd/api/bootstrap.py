"""First-start files of the embedded default, in ``daemon.data_dir``.

- ``jwt.secret`` (mode 0600): the HS256 secret when none is configured; one line.
- ``admin.key`` (mode 0600): an API key with every scope, created when the database
  has no key at all; one line, ``scheduler_...``.
- ``api.url``: the base URL this API listens on (``http://127.0.0.1:8080``), one line,
  rewritten at every start, so `schedctl` on the same host finds the API and the key.

Outside the embedded default (PostgreSQL) nothing is generated: the JWT secret must
be configured, and the first key is made with `schedctl --db URL apikey create`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from schedd.config import MIN_JWT_SECRET_BYTES, Settings
from schedd.db import Database
from schedd.errors import ConfigError
from schedd.preflight import require_jwt_secret
from schedd.schemas import SCOPES
from schedd.services import auth

log = logging.getLogger("schedd.api")

JWT_SECRET_FILE = "jwt.secret"
ADMIN_KEY_FILE = "admin.key"
API_URL_FILE = "api.url"


def write_file(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with ``text``; the file never exists with a wider mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def jwt_secret(settings: Settings) -> str:
    """The configured secret; on the embedded default, the stored or a new one.

    Outside the embedded default a missing secret is a ConfigError (the daemon stops
    with that one line).
    """
    if settings.auth.jwt_secret is not None:
        return settings.auth.jwt_secret.get_secret_value()
    require_jwt_secret(settings)
    path = Path(settings.daemon.data_dir) / JWT_SECRET_FILE
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ConfigError(
                str(path),
                None,
                f"the stored JWT secret is shorter than {MIN_JWT_SECRET_BYTES} "
                "bytes; delete the file to have a new one generated",
            )
        return secret
    secret = secrets.token_urlsafe(48)
    write_file(path, secret + "\n", 0o600)
    log.info("generated a JWT secret in %s", path)
    return secret


def with_secret(settings: Settings, secret: str) -> Settings:
    """``settings`` with ``auth.jwt_secret`` set to ``secret``."""
    auth_settings = settings.auth.model_copy(update={"jwt_secret": SecretStr(secret)})
    return settings.model_copy(update={"auth": auth_settings})


def ensure_admin_key(settings: Settings, db: Database) -> Path | None:
    """On the embedded default's first start (no key in the database), create an admin
    key with every scope and store it in ``admin.key``; the path, or None."""
    if not settings.is_embedded:
        return None
    path = Path(settings.daemon.data_dir) / ADMIN_KEY_FILE
    with db.session() as session:
        if auth.has_keys(session):
            return None
        created = auth.create_api_key(session, "admin", list(SCOPES), creator=None)
        # Written before the commit: if the file cannot be written, no key exists that
        # nobody can see.
        write_file(path, created.key + "\n", 0o600)
    log.info("created an admin API key with every scope; it is in %s (mode 0600)", path)
    return path


def base_url(host: str, port: int) -> str:
    """The URL a client on this host uses for an API bound to ``host``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}"


def write_api_url(settings: Settings, port: int) -> Path | None:
    """Record the API's base URL for `schedctl` on this host; None when not writable."""
    path = Path(settings.daemon.data_dir) / API_URL_FILE
    try:
        write_file(path, base_url(settings.api.host, port) + "\n", 0o644)
    except OSError as exc:
        log.warning("could not write %s (schedctl will need --api): %s", path, exc)
        return None
    return path
