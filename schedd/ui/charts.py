"""Chart geometry for the dashboard's inline SVG, computed on the server.

Each function turns data into plain shapes (rectangles, lines, labels) that the
templates draw; colours come from CSS classes (``s-<status>``), so charts follow the
light or dark theme and need no inline style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schedd.services.dashboard import HourCounts, Neighbours, TimelineRun

# Stacking order, bottom first: the outcomes an operator looks for sit at the bottom.
STACK = (
    "failed",
    "timeout",
    "lost",
    "cancelled",
    "skipped",
    "completed",
    "running",
    "pending",
    "waiting",
)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    cls: str
    label: str
    href: str | None = None


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    cls: str = "axis"


@dataclass
class Chart:
    width: float
    height: float
    title: str
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    for power in range(-2, 13):
        for step in (1, 2, 5):
            candidate = step * 10.0**power
            if candidate >= value:
                return candidate
    return value


def hourly(hours: Sequence[HourCounts], width: float = 720, height: float = 200) -> Chart:
    """Stacked bars of runs per hour by outcome; the hour labels are UTC."""
    chart = Chart(width, height, "Runs per hour by outcome, last 24 hours (UTC)")
    left, bottom, top = 44.0, 22.0, 8.0
    plot_h = height - bottom - top
    peak = _nice_max(max((h.total for h in hours), default=0))
    slot = (width - left - 4) / max(len(hours), 1)
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        chart.lines.append(Line(left, y, width - 4, y, "grid"))
        chart.texts.append(Text(left - 6, y + 4, f"{peak * fraction:g}", "end"))
    for i, hour in enumerate(hours):
        x = left + i * slot + 1
        y = top + plot_h
        for status in STACK:
            count = hour.by_status.get(status, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            label = f"{hour.start:%H}:00 UTC: {count} {status}"
            chart.rects.append(Rect(x, y, max(slot - 2, 1), h, f"s-{status}", label))
        if i % 3 == 0:
            chart.texts.append(Text(x + slot / 2, height - 6, f"{hour.start:%H}:00"))
    return chart


def durations(
    runs: Sequence[TimelineRun], now: datetime, width: float = 720, height: float = 160
) -> Chart:
    """One bar per run (oldest left): height is its duration, colour its outcome."""
    chart = Chart(width, height, "Duration of the latest runs by outcome")
    left, bottom, top = 56.0, 8.0, 8.0
    plot_h = height - bottom - top
    spans = [((r.end or now) - r.start).total_seconds() for r in runs]
    peak = _nice_max(max(spans, default=0))
    slot = (width - left - 4) / max(len(runs), 1)
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        chart.lines.append(Line(left, y, width - 4, y, "grid"))
        chart.texts.append(Text(left - 6, y + 4, f"{peak * fraction:g} s", "end"))
    for i, (run, span) in enumerate(zip(runs, spans, strict=True)):
        h = max(plot_h * span / peak, 2)
        chart.rects.append(
            Rect(
                left + i * slot + 1,
                top + plot_h - h,
                max(min(slot - 2, 40), 1),
                h,
                f"s-{run.status}",
                f"run {run.run_id}: {run.status}, {span:.2f} s",
                f"/ui/runs/{run.run_id}",
            )
        )
    return chart


def timeline(
    runs: Sequence[TimelineRun],
    now: datetime,
    hours: float,
    width: float = 960,
    row: float = 22,
    max_rows: int = 40,
) -> Chart:
    """Runs as bars on a time axis, one row per task (the most recently active
    tasks), from start (or creation) to end (or now)."""
    start = now - timedelta(hours=hours)
    names: list[tuple[int, str]] = []
    for run in runs:
        if (run.task_id, run.task_name) not in names and len(names) < max_rows:
            names.append((run.task_id, run.task_name))
    rows = {task_id: i for i, (task_id, _) in enumerate(names)}
    left, top = 170.0, 24.0
    height = top + row * max(len(names), 1) + 8
    chart = Chart(width, height, f"Runs of the last {hours:g} hours, one row per task")
    span = (now - start).total_seconds()
    plot_w = width - left - 8

    def x_of(moment: datetime) -> float:
        seconds = min(max((moment - start).total_seconds(), 0), span)
        return left + plot_w * seconds / span

    ticks = 6
    for i in range(ticks + 1):
        moment = start + (now - start) * i / ticks
        x = left + plot_w * i / ticks
        chart.lines.append(Line(x, top - 4, x, height - 8, "grid"))
        chart.texts.append(Text(x, 14, f"{moment:%H:%M}"))
    for task_id, name in names:
        y = top + rows[task_id] * row
        short = name if len(name) <= 22 else name[:21] + "…"
        chart.texts.append(Text(left - 8, y + row * 0.65, short, "end"))
    for run in runs:
        index = rows.get(run.task_id)
        if index is None:
            continue
        x1 = x_of(run.start)
        x2 = x_of(run.end or now)
        chart.rects.append(
            Rect(
                x1,
                top + index * row + 3,
                max(x2 - x1, 3),
                row - 6,
                f"s-{run.status}",
                f"{run.task_name} run {run.run_id}: {run.status}",
                f"/ui/runs/{run.run_id}",
            )
        )
    return chart


@dataclass(frozen=True)
class Node:
    x: float
    y: float
    width: float
    height: float
    text: str
    href: str
    cls: str


@dataclass(frozen=True)
class Edge:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class Graph:
    width: float
    height: float
    nodes: list[Node]
    edges: list[Edge]


def dependency_graph(
    task_id: int,
    around: Neighbours,
    node_w: float = 150,
    node_h: float = 30,
    gap_x: float = 50,
    gap_y: float = 14,
) -> Graph:
    """Upstream tasks to the left, downstream to the right, in columns by distance;
    arrows point the way runs flow (from upstream to dependant)."""
    column = {task_id: 0}
    for a, b in around.upstream:  # a is upstream of b
        column.setdefault(a.id, column.get(b.id, 0) - 1)
    for a, b in around.downstream:
        column.setdefault(b.id, column.get(a.id, 0) + 1)
    lowest = min(column.values())
    columns: dict[int, list[int]] = {}
    for node_id, c in sorted(column.items(), key=lambda kv: (kv[1], kv[0])):
        columns.setdefault(c - lowest, []).append(node_id)
    tallest = max(len(ids) for ids in columns.values())
    height = tallest * (node_h + gap_y) + gap_y
    width = len(columns) * (node_w + gap_x) - gap_x + 8
    place: dict[int, tuple[float, float]] = {}
    nodes = []
    for c, ids in columns.items():
        offset = (height - len(ids) * (node_h + gap_y) + gap_y) / 2
        for i, node_id in enumerate(ids):
            x = 4 + c * (node_w + gap_x)
            y = offset + i * (node_h + gap_y)
            place[node_id] = (x, y)
            info = around.nodes[node_id]
            text = info.name if len(info.name) <= 20 else info.name[:19] + "…"
            cls = "node-self" if node_id == task_id else f"node-{info.status}"
            nodes.append(Node(x, y, node_w, node_h, text, f"/ui/tasks/{node_id}", cls))
    edges = []
    for a, b in {*around.upstream, *around.downstream}:
        if a.id in place and b.id in place:
            (ax, ay), (bx, by) = place[a.id], place[b.id]
            edges.append(Edge(ax + node_w, ay + node_h / 2, bx - 2, by + node_h / 2))
    return Graph(width, height, nodes, edges)
