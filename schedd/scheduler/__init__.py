"""The scheduler role: fires due tasks exactly once, applies misfire, overlap and
dependency rules, creates retries, reaps dead workers and sweeps the dispatch outbox.

One job per module: ``policies`` (pure decisions), ``fire`` (the fire pass),
``dependencies``, ``retries``, ``reaper``, ``sweeper``, ``store`` (shared run SQL),
``lease`` (one scheduler per SQLite database), ``notify`` (PostgreSQL wake-ups),
``metrics``, ``passes`` (one pass of all steps) and ``role`` (the daemon thread).
"""
