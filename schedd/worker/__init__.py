"""The worker role: claims runs, executes them, reports, heartbeats, drains.

- :mod:`.role`: :class:`~schedd.worker.role.WorkerRole`, the wiring and the main thread
- :mod:`.claiming`: the claim loop (database broker or message broker deliveries)
- :mod:`.runs`: the runs a worker holds and the thread that executes one
- :mod:`.monitor`: cancel and ownership checks, output flushes, final reports
- :mod:`.capture`: a run's output, bounded, on its way to storage
- :mod:`.heartbeat`: heartbeats and the fence
- :mod:`.drain`: stopping: finish or hand back, then go offline
- :mod:`.identity`: the worker's id, host name and address
"""
