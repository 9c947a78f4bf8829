"""sched: a distributed task scheduler (the daemon and the core shared with schedctl)."""

from __future__ import annotations

__version__ = "0.1.0"
