"""Benchmarks: run as modules from the project root, e.g. ``python -m bench.heartbeats``."""
