"""Where the API is and which credential to send, when the operator did not say.

On the host of an embedded schedd, the api role writes two files into its data
directory (``[daemon] data_dir``, by default ``$XDG_DATA_HOME/sched``): the URL it
listens on and the admin API key it created on first start (mode 0600). schedctl reads
them, so a new user needs no flags. Order:

- URL: ``--api`` / ``SCHED_API``, else the URL file, else ``http://[api] host:port``
  from the configuration (``127.0.0.1:8080`` by default).
- Credential: ``--token`` / ``SCHED_TOKEN``, else the admin key file, but only when
  the URL is the local daemon's own: the key is never sent to a server named by
  ``--api`` that is not the one that wrote it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schedd.config import Settings

# The names schedd.api.bootstrap writes (not imported from there: it would pull the
# database layer into every start of schedctl; a unit test keeps the two equal).
ADMIN_KEY_FILE = "admin.key"
API_URL_FILE = "api.url"


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str | None
    url_source: str  # "--api", "SCHED_API", the file path, or "configuration"
    token_source: str | None


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None
    return text or None


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


def configured_url(settings: Settings) -> str:
    return base_url(settings.api.host, settings.api.port)


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def find_endpoint(
    api: str | None,
    api_source: str,
    token: str | None,
    token_source: str,
    settings: Callable[[], Settings],
) -> Endpoint:
    """The URL and credential to use; ``settings`` is called only when a file is needed."""
    if api and token:
        return Endpoint(api, token, api_source, token_source)
    loaded = settings()
    data_dir = Path(loaded.daemon.data_dir)
    url_file = data_dir / API_URL_FILE
    local_url = _read(url_file)
    local_source = str(url_file) if local_url else "configuration"
    local_url = local_url or configured_url(loaded)
    url, source = (api, api_source) if api else (local_url, local_source)
    if token:
        return Endpoint(url, token, source, token_source)
    key_file = data_dir / ADMIN_KEY_FILE
    key = _read(key_file) if _same(url, local_url) else None
    return Endpoint(url, key, source, str(key_file) if key else None)
