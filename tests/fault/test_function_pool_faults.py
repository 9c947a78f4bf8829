"""A worker killed with SIGKILL leaves no function pool process, nor what a call started.

The pool processes die of PR_SET_PDEATHSIG (set for the pool thread that started them);
what a call started in a pool process's group is killed by the worker's guard.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workerkit import alive, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import sys, threading
from schedd.config import WorkerSettings
from schedd.executors.base import StopSignal
from schedd.executors.function import FunctionExecutor
from schedd.executors.guard import Guard
from tests.workerkit import spec

class Echo:
    def write(self, data):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

guard = Guard()
guard.start()
executor = FunctionExecutor(
    WorkerSettings(function_pool_size=3, working_directory=sys.argv[1]), guard
)
def call():
    run = spec("tests.funcs:print_pids_then_sleep", executor="function", timeout=300)
    executor.execute(run, Echo(), StopSignal())
thread = threading.Thread(target=call)
thread.start()
while len(executor.pool.pids()) < 2:
    threading.Event().wait(0.05)
print(*executor.pool.pids(), flush=True)
thread.join()
"""


@pytest.mark.parametrize("mode", ["setpriv", "preexec"])
def test_a_worker_killed_by_sigkill_leaves_no_pool_process(mode: str) -> None:
    script = WORKER
    if mode == "preexec":  # no setpriv: prctl() in a preexec_fn
        script = "from schedd.executors import launch\nlaunch.setpriv_prefix = lambda: None\n" + (
            script
        )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(ROOT)], stdout=subprocess.PIPE, cwd=ROOT
    ) as worker:
        assert worker.stdout is not None
        lines = [worker.stdout.readline().split() for _ in range(2)]
        pids = sorted({int(pid) for line in lines for pid in line})
        assert len(pids) >= 4, pids  # the busy process, its child, two idle processes
        assert all(alive(pid) for pid in pids)
        worker.send_signal(signal.SIGKILL)
        worker.wait(5)
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 5), [
        pid for pid in pids if alive(pid)
    ]
