"""The operator's own time zone, for showing fire times in local time beside the task's.

``TZ`` first (an IANA name, with or without the leading ``:``), then the zone
``/etc/localtime`` links to; a zone that cannot be named falls back to the current
fixed UTC offset (right for today, not across a DST change).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCALTIME = "/etc/localtime"


def local_zone(environ: Mapping[str, str]) -> tuple[tzinfo, str]:
    """(zone, its name) of the machine schedctl runs on."""
    name = environ.get("TZ", "").lstrip(":")
    if name:
        zone = _zone(name)
        if zone is not None:
            return zone, name
    target = os.path.realpath(LOCALTIME)
    if "/zoneinfo/" in target:
        name = target.split("/zoneinfo/", 1)[1]
        zone = _zone(name)
        if zone is not None:
            return zone, name
    fixed = datetime.now().astimezone().tzinfo
    assert fixed is not None
    return fixed, fixed.tzname(None) or "local"


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
