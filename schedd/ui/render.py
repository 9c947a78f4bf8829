"""Templates (Jinja2, autoescaped), their filters, and the packaged static files."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from schedd import __version__
from schedd.models import ACTIVE_RUN_STATUSES, RunStatus
from schedd.services.dashboard import Outcome

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str


def _load_static() -> dict[str, StaticFile]:
    found = {}
    for entry in resources.files("schedd.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in STATIC_TYPES:
            body = entry.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            found[entry.name] = StaticFile(body, STATIC_TYPES[suffix], version)
    return found


STATIC = _load_static()


def static_url(name: str) -> str:
    """The URL of a packaged static file, versioned so a new release is fetched anew."""
    return f"/ui/static/{name}?v={STATIC[name].version}"


def iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def when(moment: datetime | None, zone: str = "UTC") -> str:
    """A time for reading: ``2026-12-06 09:00:00 CET`` in ``zone``."""
    if moment is None:
        return "—"
    local = moment.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or zone)


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    text = duration(abs(seconds), precise=False)
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None, precise: bool = True) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s" if precise and seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if precise else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def sentence(text: str) -> str:
    """``text`` with its first letter upper case (Jinja's capitalize lowers the rest)."""
    return text[:1].upper() + text[1:]


def strip(outcomes: Sequence[Outcome]) -> Markup:
    """A task's outcome strip, built here rather than in a template: a page of tasks
    has a thousand cells, and four template substitutions a cell are most of its
    rendering time. Run ids are integers; each status is escaped once."""
    if not outcomes:
        return Markup('<span class="muted">no runs yet</span>')
    statuses: dict[str, str] = {}
    cells = []
    for o in outcomes:
        status = statuses.get(o.status)
        if status is None:
            status = statuses[o.status] = str(escape(o.status))
        run = int(o.run_id)
        cells.append(
            f'<li><a class="cell s-{status}" href="/ui/runs/{run}" title="run {run}: {status}">'
            f'<span class="sr">run {run} {status}</span></a></li>'
        )
    label = f"last {len(outcomes)} outcomes, oldest first"
    return Markup(f'<ul class="strip" aria-label="{label}">{"".join(cells)}</ul>')


def is_active(status: str) -> bool:
    return status in {s.value for s in ACTIVE_RUN_STATUSES}


env = Environment(
    loader=PackageLoader("schedd.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(iso=iso, when=when, ago=ago, duration=duration, sentence=sentence)
env.globals.update(
    static_url=static_url,
    version=__version__,
    is_active=is_active,
    strip=strip,
    run_statuses=[s.value for s in RunStatus],
)


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code)
