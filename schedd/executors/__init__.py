"""Executors run one run's work: a shell command, a Python script or an HTTP request.

The interface is in :mod:`schedd.executors.base`; :mod:`schedd.executors.registry`
builds the executors a worker offers. This package's ``__init__`` stays empty because
the process guard (:mod:`schedd.executors.guardproc`) starts as ``python -m`` and should
import as little as possible.
"""
