"""A cron expression in English words, for people reading the dashboard.

``describe("0 0 9 * * 1-5")`` is ``"at 09:00, Monday through Friday"``. The expression
is validated first (:func:`schedd.cronfields.parse_fields`), so only valid expressions
are described; the words follow the fields as written (``*/15`` is "every 15 minutes",
not a list of four minutes).
"""

from __future__ import annotations

from schedd.cronfields import MACROS, parse_fields

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTH_NAMES = {m[:3].upper(): i + 1 for i, m in enumerate(_MONTHS)}
_DAY_NAMES = {d[:3].upper(): i for i, d in enumerate(_DAYS[:7])}


def _number(token: str, names: dict[str, int]) -> int:
    return names[token.upper()] if token.upper() in names else int(token)


def _join(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def _is_number(text: str) -> bool:
    return text.isdigit()


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}s" if count != 1 else unit


def _item(item: str, unit: str, label: dict[str, int], show: list[str] | None) -> str:
    """One comma-separated item of a field, in words."""

    def name(token: str) -> str:
        value = _number(token, label)
        return show[value] if show is not None else str(value)

    base, _, step = item.partition("/")
    if base in ("*", "?"):
        return f"every {_plural(int(step), unit)}" if step else f"every {unit}"
    start, _, end = base.partition("-")
    if step:
        span = f"from {name(start)} through {name(end)}" if end else f"starting at {name(start)}"
        return f"every {_plural(int(step), unit)} {span}"
    if end:
        return f"{name(start)} through {name(end)}"
    return name(start)


def _field(
    text: str, unit: str, label: dict[str, int] | None = None, show: list[str] | None = None
) -> str:
    items = [_item(i, unit, label or {}, show) for i in text.split(",")]
    return _join(items)


def _clock(hour: str, minute: str, second: str) -> str:
    seconds = "" if second == "0" else f":{int(second):02d}"
    return f"{int(hour):02d}:{int(minute):02d}{seconds}"


def _time_words(second: str, minute: str, hour: str) -> tuple[str, bool]:
    """The time-of-day part, and whether it is a list of fixed clock times."""
    if all(_is_number(x) for x in (minute, *second.split(","), *hour.split(","))):
        times = [_clock(h, minute, s) for h in hour.split(",") for s in second.split(",")]
        return "at " + _join(times), True
    parts = []
    if second == "*":
        parts.append("every second")
    elif second != "0":
        parts.append(_describe_unit(second, "second"))
    if minute == "*":
        if second == "0":
            parts.append("every minute")
        elif second != "*" and "/" not in second and not second.startswith("*"):
            parts[-1] += " of every minute"
    elif minute == "0" and second == "0":
        parts.append("every hour, on the hour" if hour == "*" else "on the hour")
    else:
        parts.append(_describe_unit(minute, "minute"))
    if hour != "*":
        parts.append(_describe_unit(hour, "hour", during=True))
    return ", ".join(parts), False


def _describe_unit(text: str, unit: str, *, during: bool = False) -> str:
    words = _field(text, unit)
    if text.startswith("*") or "/" in text:
        return words
    # Plain numbers and ranges: "at minute 5", "at minutes 0 and 30", "during hours 9
    # through 17".
    plural = "," in text or "-" in text
    return f"{'during' if during else 'at'} {unit}{'s' if plural else ''} {words}"


def describe(expression: str) -> str:
    """``expression`` in words; raises :class:`~schedd.cronfields.CronError` when it
    is not a valid cron expression."""
    parse_fields(expression)
    text = MACROS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) == 5:
        parts.insert(0, "0")
    second, minute, hour, dom, month, dow = parts
    time_words, fixed = _time_words(second, minute, hour)
    words = [time_words]
    days = []
    if dom not in ("*", "?"):
        if "/" in dom:
            days.append(_field(dom, "day") + " of the month")
        else:
            plural = "s" if ("," in dom or "-" in dom) else ""
            days.append(f"on day{plural} " + _field(dom, "day") + " of the month")
    if dow not in ("*", "?"):
        days.append("on " + _field(dow, "day", _DAY_NAMES, _DAYS))
    if days:
        words.append(" or ".join(days))
    elif fixed:
        words.append("every day")
    if month != "*":
        words.append("in " + _field(month, "month", _MONTH_NAMES, ["", *_MONTHS]))
    return ", ".join(w for w in words if w)
