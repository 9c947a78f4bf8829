"""Secrets out of URLs and DSNs: the one redaction every printed, logged, stored or
served URL goes through (``schedd config show``, ``schedd migrate``, the daemon's log,
system events, ``/api/system/logs``, schedctl).

A password in the user information (``user:secret@``) and the value of any query item
whose name looks like a credential (``password``, ``sslpassword``, ``token``,
``access_token``, ``key``, ``apikey``, ``secret``, ``auth``, ``signature`` ...) show as
``***``; everything else is kept byte for byte, so the URL still says where it points.
"""

from __future__ import annotations

import re

MASK = "***"

# Query item names that carry a credential: any name containing one of these words.
SECRET_NAME = r"[\w.-]*(?:pass|pwd|token|secret|key|auth|credential|signature|sig\b)[\w.-]*"
_QUERY_SECRET = re.compile(rf"(?i)([?&;]{SECRET_NAME}=)[^&#;\s]*")
# Free text: URLs, and libpq-style ``password=...`` pairs outside URLs.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PAIR_SECRET = re.compile(
    r"(?i)(?<![\w./?&;-])((?:password|passwd|pwd|sslpassword|token|secret|api_?key)\s*=\s*)"
    r"('[^']*'|\"[^\"]*\"|[^\s,;&]+)"
)


def redact_url(url: str) -> str:
    """``url`` with its user-information password and secret query values as ``***``.

    Not a URL (no ``://``): returned as it is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in map(rest.find, "?#") if i >= 0), default=len(rest))
    head, tail = rest[:end], rest[end:]
    # Like SQLAlchemy, let an unencoded password hold '/' or '@': everything between
    # "user:" and the last '@' goes.
    if userinfo := re.match(r"([^:/@]*):.*@", head):
        head = f"{userinfo.group(1)}:{MASK}@{head[userinfo.end() :]}"
    tail = _QUERY_SECRET.sub(rf"\1{MASK}", tail)
    return f"{scheme}://{head}{tail}"


def redact_text(text: str) -> str:
    """``text`` (a log line, an error message) with every URL in it redacted and any
    ``password=...``-style pair outside a URL masked."""
    if "://" not in text and "=" not in text:
        return text  # the common case, without a regex
    text = _URL.sub(_redact_match, text)
    return _PAIR_SECRET.sub(rf"\1{MASK}", text)


def _redact_match(match: re.Match[str]) -> str:
    # Punctuation that ends a sentence ("...db?password=x: refused") is not the URL's.
    url = match.group(0)
    core = url.rstrip(".,:;)]")
    return redact_url(core) + url[len(core) :]


def redact_url_path(url: str) -> str:
    """``url`` as scheme and host only (``https://hooks.example.com/***``): for URLs
    whose path is itself the credential, such as chat webhooks."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/{MASK}"
