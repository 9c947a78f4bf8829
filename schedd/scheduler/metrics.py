"""Prometheus metrics of the scheduler role (prefix ``scheduler_``, DESIGN section 11).

Registered once, on the default registry, when this module is first imported; the
API's ``/metrics`` serves that registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FIRES = Counter(
    "scheduler_fires",
    "Scheduled and dependency fires that created a pending run.",
)
MISSED_FIRES = Counter(
    "scheduler_missed_fires",
    "Fire times handled later than misfire_grace_seconds, or dropped, by misfire policy.",
    ["policy"],
)
FIRE_LAG = Histogram(
    "scheduler_fire_lag_seconds",
    "Seconds from a run's scheduled time to its creation.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
RETRIES = Counter("scheduler_retries", "Retry runs created for failed, timed-out or lost runs.")
REAPED_RUNS = Counter(
    "scheduler_reaped_runs", "Running runs the reaper ended, by the status given.", ["status"]
)
WORKERS_OFFLINE = Counter("scheduler_workers_marked_offline", "Workers the reaper marked offline.")
REDISPATCHED = Counter(
    "scheduler_redispatched_runs", "Pending runs the outbox sweeper handed to the broker again."
)
PASS_SECONDS = Histogram(
    "scheduler_pass_seconds",
    "Duration of one scheduler pass (fire, dependencies, retries, reaper, sweeper).",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CLOCK_SKEW = Gauge(
    "scheduler_clock_skew_seconds",
    "This host's clock minus the database's, measured at the last scheduler pass.",
    multiprocess_mode="mostrecent",  # several API processes: the scheduler's value
)
