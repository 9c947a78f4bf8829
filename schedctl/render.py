"""Output: Rich tables for people, JSON for scripts.

``--output json`` prints the API's JSON document unchanged (a list command prints the
page: ``{"items", "total", "page", "size"}``), so a script gets the same bytes whatever
the mode. Tables are plain columns without borders, easy to read and to grep; times
are UTC with a relative hint, colours only on a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from schedctl.env import Environment
from schedctl.output import Output

__all__ = ["Output"]


STATUS_STYLES = {
    "completed": "green",
    "active": "green",
    "ok": "green",
    "running": "cyan",
    "pending": "yellow",
    "waiting": "yellow",
    "paused": "yellow",
    "draining": "yellow",
    "degraded": "yellow",
    "failed": "red",
    "timeout": "red",
    "lost": "magenta",
    "offline": "red",
    "unavailable": "red",
    "cancelled": "dim",
    "skipped": "dim",
}
LEVEL_STYLES = {"DEBUG": "dim", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def json_line(data: Any) -> str:
    """One compact JSON document per line (for streams: `-f -o json`)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def emit(
    env: Environment,
    output: Output,
    data: Any,
    view: Callable[[Any], RenderableType | Iterable[RenderableType]],
) -> None:
    """Print ``data`` as JSON, or as the renderable(s) ``view`` makes of it."""
    if output is Output.json:
        env.write(to_json(data))
        return
    rendered = view(data)
    parts = [rendered] if isinstance(rendered, str | Text | Table) else list(rendered)  # type: ignore[arg-type]
    print_all(env, parts)


# Characters a terminal acts on instead of showing: C0/C1 controls but the newline
# (ESC starts colour, cursor and screen-clearing sequences; CR overwrites a line) and
# the bidirectional overrides that reorder what is shown. Server data (task names,
# descriptions, errors) shows them escaped.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``)."""
    return _CONTROL.sub(_escaped, text)


def safe(part: RenderableType) -> RenderableType:
    """``part`` with control characters in its text escaped (tables cell by cell)."""
    if isinstance(part, str):
        return visible(part)
    if isinstance(part, Text):
        if _CONTROL.search(part.plain):
            return Text(visible(part.plain), style=part.style, end=part.end)
        return part
    if isinstance(part, Table):
        if isinstance(part.title, str | Text):
            part.title = safe(part.title)  # type: ignore[assignment]
        for column in part.columns:
            column._cells = [safe(cell) for cell in column._cells]
    return part


def print_all(env: Environment, parts: Sequence[RenderableType]) -> None:
    """Print renderables, control characters escaped (a task description must not
    drive the operator's terminal); off a terminal without the padding Rich leaves at
    line ends."""
    parts = [safe(part) for part in parts]
    console = env.console()
    if env.stdout_isatty:
        for part in parts:
            console.print(part)
        return
    with console.capture() as captured:
        for part in parts:
            console.print(part)
    env.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


# -- values ---------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def now() -> datetime:
    return datetime.now(UTC)


def duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def relative(value: str | None, reference: datetime | None = None) -> str:
    """``in 4m05s`` or ``12s ago`` (``-`` for no time)."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    delta = (moment - (reference or now())).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"


def timestamp(value: str | None) -> str:
    """``2025-03-30 01:00:00Z`` (UTC, to the second)."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def when(value: str | None, reference: datetime | None = None) -> str:
    """Timestamp with the relative hint: ``2025-03-30 01:00:00Z (in 4m05s)``."""
    if not value:
        return "-"
    return f"{timestamp(value)} ({relative(value, reference)})"


def status(value: str | None) -> Text:
    text = value or "-"
    return Text(text, style=STATUS_STYLES.get(text, ""))


def level(value: str) -> Text:
    return Text(value, style=LEVEL_STYLES.get(value.upper(), ""))


def plain(value: Any) -> str:
    """A field value as table text: lists joined, None as ``-``."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def number(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


# -- tables ---------------------------------------------------------------------------


def columns(*headers: str, title: str | None = None) -> Table:
    """A borderless table with the given column headers."""
    table = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=60)
    return table


def fields(rows: Sequence[tuple[str, RenderableType]], title: str | None = None) -> Table:
    """Two columns: field name, value (for `show` commands)."""
    table = Table(box=None, show_header=False, pad_edge=False, title=title, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def footer(page: dict[str, Any], noun: str) -> Text:
    """``3 tasks`` or ``tasks 51-100 of 230 (next page: --page 3)``; ``noun`` is plural."""
    total, number_, size = page["total"], page["page"], page["size"]
    shown = len(page["items"])
    if number_ == 1 and shown == total:
        one = noun[:-3] + "y" if noun.endswith("ies") else noun[:-1]
        return Text(f"{total} {one if total == 1 else noun}", style="dim")
    first = (number_ - 1) * size + 1
    text = f"{noun} {first}-{first + shown - 1} of {total}" if shown else f"no {noun} on this page"
    if number_ * size < total:
        text += f" (next page: --page {number_ + 1})"
    return Text(text, style="dim")
