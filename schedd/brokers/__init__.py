"""Brokers carry run ids from the scheduler (and API) to workers.

The database stays the source of truth: a delivered id is only a hint, and a worker
must still claim the run in the database, so duplicates are harmless and a lost message
is recovered by the outbox sweeper.
"""
