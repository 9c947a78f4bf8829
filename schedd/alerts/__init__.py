"""Alerts: events from run outcomes and silences, delivered to notification channels.

- :mod:`.rules`: which events a task alerts on, and to which channels (task ``notify``
  merged over ``notify.default``);
- :mod:`.events`: recording events (one row per event, a unique key) and their
  deliveries (one row per channel);
- :mod:`.channels`: webhook, slack, email and command senders;
- :mod:`.delivery`: sending due deliveries with retry, backoff and digests;
- :mod:`.notifier`: the thread that does both, in one process at a time (a lease).
"""
