"""What an alert says: a subject line, a plain text body, and the JSON document.

The JSON document (webhook body, command stdin) is the event's stored details plus
the delivery's id and channel; chat and mail get the text rendering of the same facts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

TITLES = {
    "failed": "FAILED",
    "recovered": "RECOVERED",
    "succeeded": "succeeded",
    "missed": "MISSED",
    "long_running": "RUNNING LONG",
    "absent": "ABSENT",
    "digest": "DIGEST",
    "test": "TEST",
}


@dataclass(frozen=True)
class Message:
    event: str
    subject: str
    text: str
    document: dict[str, Any]


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _outcome(run: dict[str, Any]) -> str:
    parts = [str(run.get("status") or "?")]
    if run.get("exit_code") is not None:
        parts.append(f"exit code {run['exit_code']}")
    if run.get("error"):
        parts.append(str(run["error"]))
    return ", ".join(parts)


def event_message(details: dict[str, Any], delivery_id: int | None, channel: str) -> Message:
    """The message for one event (``details`` as stored)."""
    event = str(details.get("event", "event"))
    task = details.get("task") or {}
    run = details.get("run") or {}
    name = task.get("name", "?")
    title = TITLES.get(event, event.upper())
    if run:
        subject = f"[sched] {title}: {name} (run {run.get('id')}: {_outcome(run)})"
    else:
        subject = f"[sched] {title}: {name}"
    lines = [f"Task: {name} (id {task.get('id', '?')})", f"Event: {event}"]
    if run:
        lines += [
            f"Run: {run.get('id')} (attempt {run.get('attempt', 0)}, {run.get('trigger', '?')})",
            f"Status: {_outcome(run)}",
            f"Duration: {_seconds(run.get('duration_seconds'))}",
        ]
    if details.get("reason"):
        lines.append(f"Reason: {details['reason']}")
    if details.get("running_seconds") is not None:
        lines.append(
            f"Running for: {_seconds(details['running_seconds'])}"
            f" (warn_after_seconds {details.get('warn_after_seconds')})"
        )
    if details.get("missed"):
        lines.append(f"Missed fire times: {details['missed']}")
    lines.append(f"Host: {details.get('host') or '-'}")
    tail = details.get("output_tail")
    if tail:
        lines += ["Last output:", *("  " + line for line in str(tail).splitlines())]
    if details.get("logs_command"):
        lines.append(f"More: {details['logs_command']}")
    document = {**details, "delivery_id": delivery_id, "channel": channel, "subject": subject}
    return Message(event, subject[:250], "\n".join(lines), document)


def digest_message(
    collapsed: list[dict[str, Any]], delivery_id: int | None, channel: str
) -> Message:
    """One message standing for ``collapsed`` events (details as stored)."""
    by_event = Counter(str(d.get("event")) for d in collapsed)
    by_task = Counter(str((d.get("task") or {}).get("name", "?")) for d in collapsed)
    count = len(collapsed)
    subject = f"[sched] DIGEST: {count} more alert(s) ({_counts(by_event)})"
    lines = [
        f"{count} alert(s) were collapsed into this digest (notify.max_per_minute).",
        f"By event: {_counts(by_event)}",
        "By task:",
        *(f"  {name}: {n}" for name, n in by_task.most_common(20)),
    ]
    if len(by_task) > 20:
        lines.append(f"  ... and {len(by_task) - 20} more task(s)")
    lines.append("More: schedctl notify list")
    document = {
        "event": "digest",
        "count": count,
        "events": dict(by_event),
        "tasks": dict(by_task.most_common(100)),
        "delivery_id": delivery_id,
        "channel": channel,
        "subject": subject,
    }
    return Message("digest", subject, "\n".join(lines), document)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common())


def test_message(channel: str, host: str) -> Message:
    subject = f"[sched] TEST: a test message to channel {channel}"
    text = f"This is a test message from sched on {host} to channel {channel}."
    document = {"event": "test", "channel": channel, "host": host, "subject": subject}
    return Message("test", subject, text, document)
