"""The executor contract (schedd.executors.base), one suite run over every executor.

Each executor gets a :class:`Programs` adapter that says how to express the same few
programs in its terms (print and succeed, fail with a status, hang, flood the output);
the tests then hold every executor to the same promises: output reaches the sink and
the cap holds, success and failure are told apart the same way, the timeout ends the
run as ``timeout``, a cancel ends it within 2 s even when it ignores SIGTERM, a lost run
is ended at once, and nothing the run started outlives it.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from schedd.config import WorkerSettings
from schedd.executors import cgroupsv2
from schedd.executors.base import Ending, Executor, Outcome, RunSpec, StopReason, StopSignal
from schedd.executors.cgroups import NoCgroups
from schedd.executors.registry import EXECUTORS
from schedd.worker.capture import OutputCapture
from tests.services import unavailable
from tests.workerkit import Sink, alive, pids_in, spec, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Programs(ABC):
    """How one executor expresses the contract's programs."""

    name: str
    exit_codes = True  # a failure carries the program's exit status
    shows_pids = True  # a hanging program prints the pids it and its children run as

    @abstractmethod
    def ok(self, text: str) -> RunSpec:
        """Output ``text`` (nothing else) and succeed."""

    @abstractmethod
    def bad(self, code: int) -> RunSpec:
        """Fail with status ``code``."""

    @abstractmethod
    def hang(self, *, ignore_term: bool = False, timeout: float = 30) -> RunSpec:
        """Print the pids involved, start a child, and never end by itself."""

    @abstractmethod
    def flood(self, size: int) -> RunSpec:
        """Output ``size`` bytes and succeed."""


class ShellPrograms(Programs):
    name = "shell"

    def ok(self, text: str) -> RunSpec:
        return spec('printf "%s" "$1"', text)

    def bad(self, code: int) -> RunSpec:
        return spec(f"echo failing >&2; exit {code}")

    def hang(self, *, ignore_term: bool = False, timeout: float = 30) -> RunSpec:
        trap = "trap '' TERM; " if ignore_term else ""
        return spec(f"{trap}echo $$; sleep 300 & echo $!; wait", timeout=timeout)

    def flood(self, size: int) -> RunSpec:
        return spec(f"head -c {size} /dev/zero | tr '\\0' x")


class PythonPrograms(Programs):
    name = "python"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _script(self, name: str, body: str, *arguments: str, timeout: float = 30) -> RunSpec:
        (self.directory / f"{name}.py").write_text(body)
        return spec(f"{name}.py", *arguments, executor="python", timeout=timeout)

    def ok(self, text: str) -> RunSpec:
        return self._script("ok", "import sys; sys.stdout.write(sys.argv[1])", text)

    def bad(self, code: int) -> RunSpec:
        return self._script(
            "bad", f"import sys; print('failing', file=sys.stderr); sys.exit({code})"
        )

    def hang(self, *, ignore_term: bool = False, timeout: float = 30) -> RunSpec:
        body = (
            "import os, signal, subprocess, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "child = subprocess.Popen(['sleep', '300'])\n"
            + "print(os.getpid(), child.pid, flush=True)\n"
            + "time.sleep(300)\n"
        )
        return self._script("hang", body, timeout=timeout)

    def flood(self, size: int) -> RunSpec:
        return self._script("flood", f"import sys; sys.stdout.write('x' * {size})")


class FunctionPrograms(Programs):
    name = "function"

    def _call(self, target: str, *arguments: str, timeout: float = 30) -> RunSpec:
        return spec(f"tests.funcs:{target}", *arguments, executor="function", timeout=timeout)

    def ok(self, text: str) -> RunSpec:
        return self._call("write", f'"{text}"')

    def bad(self, code: int) -> RunSpec:
        return self._call("exit_with", str(code))

    def hang(self, *, ignore_term: bool = False, timeout: float = 30) -> RunSpec:
        target = "ignore_term_then_sleep" if ignore_term else "print_pids_then_sleep"
        return self._call(target, timeout=timeout)

    def flood(self, size: int) -> RunSpec:
        return self._call("print_bytes", str(size))


class HttpPrograms(Programs):
    name = "http"
    exit_codes = False  # an HTTP status is not a process status
    shows_pids = False

    def __init__(self, url: str) -> None:
        self.url = url

    def ok(self, text: str) -> RunSpec:
        return spec(f"{self.url}/text/{text}", executor="http")

    def bad(self, code: int) -> RunSpec:
        return spec(f"{self.url}/status/{500 + code}", executor="http")

    def hang(self, *, ignore_term: bool = False, timeout: float = 30) -> RunSpec:
        return spec(f"{self.url}/hang", executor="http", timeout=timeout)

    def flood(self, size: int) -> RunSpec:
        return spec(f"{self.url}/flood/{size}", executor="http")


@pytest.fixture
def http_url() -> Iterator[str]:
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            _, kind, value = ([*self.path.split("/"), "", ""])[:3]
            if kind == "hang":
                release.wait(30)
            status = int(value) if kind == "status" else 200
            body = b"x" * int(value) if kind == "flood" else value.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    release.set()
    httpd.shutdown()
    httpd.server_close()


# Executors that start processes run the contract twice: with a cgroup per run where
# this host can make one, and in the process-group fallback.
SUBJECTS = sorted(EXECUTORS) + [f"{name}-cgroup" for name in ("python", "shell")]


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Executor, Programs]]:
    """Each executor with its programs; the function pool works from the checkout."""
    name, _, mode = request.param.partition("-")
    directory = ROOT if name == "function" else tmp_path
    settings = WorkerSettings(
        kill_grace_seconds=1, working_directory=str(directory), http_allow=["127.0.0.1/32"]
    )
    cgroups = None
    if mode == "cgroup":
        cgroups = cgroupsv2.detect("auto", None, f"contract-{os.getpid()}")
        if isinstance(cgroups, NoCgroups):
            unavailable("cgroups", "run as root on a host with cgroup v2 or a hybrid tree")
    executor = EXECUTORS[name](settings, None, cgroups)
    programs: Programs
    if name == "shell":
        programs = ShellPrograms()
    elif name == "python":
        programs = PythonPrograms(tmp_path)
    elif name == "function":
        programs = FunctionPrograms()
    elif name == "http":
        programs = HttpPrograms(request.getfixturevalue("http_url"))
    else:
        pytest.fail(f"no contract programs for the {name} executor: add them here")
    try:
        yield executor, programs
    finally:
        executor.close()
        if cgroups is not None:
            cgroups.close()


class Running:
    """An execution in a thread, like the worker's run thread."""

    def __init__(self, executor: Executor, run: RunSpec, sink: Any = None) -> None:
        self.sink = sink if sink is not None else Sink()
        self.stop = StopSignal()
        self.outcome: Outcome | None = None

        def target() -> None:
            self.outcome = executor.execute(run, self.sink, self.stop)

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def result(self, timeout: float) -> Outcome:
        self.thread.join(timeout)
        assert self.outcome is not None, f"the executor did not return within {timeout} s"
        return self.outcome

    def started(self, programs: Programs) -> list[int]:
        """The pids the hanging program printed (waits for them), [] for http."""
        if not programs.shows_pids:
            time.sleep(0.3)  # the request is on its way
            return []
        assert wait_until(lambda: len(pids_in(self.sink.text)) >= 1, 10)
        return pids_in(self.sink.text)


def test_success_completes_with_the_output(subject: tuple[Executor, Programs]) -> None:
    executor, programs = subject
    outcome = Running(executor, programs.ok("hello-contract")).result(20)
    assert (outcome.ending, outcome.error) == (Ending.completed, None)
    if programs.exit_codes:
        assert outcome.exit_code == 0
    assert outcome.duration > 0


def test_output_reaches_the_sink(subject: tuple[Executor, Programs]) -> None:
    executor, programs = subject
    running = Running(executor, programs.ok("hello-contract"))
    running.result(20)
    assert running.sink.text.endswith("hello-contract")


def test_failure_fails_with_the_status_in_a_sentence(subject: tuple[Executor, Programs]) -> None:
    executor, programs = subject
    outcome = Running(executor, programs.bad(3)).result(20)
    assert outcome.ending is Ending.failed
    assert outcome.error
    if programs.exit_codes:
        assert outcome.exit_code == 3
        assert outcome.error == "exited with status 3"


def test_output_beyond_the_cap_keeps_head_and_tail_only(
    subject: tuple[Executor, Programs],
) -> None:
    executor, programs = subject
    capture = OutputCapture(10_000)
    outcome = Running(executor, programs.flood(300_000), capture).result(30)
    capture.close()
    assert outcome.ending is Ending.completed
    assert capture.total >= 300_000
    batch = capture.pending()
    assert batch is not None
    assert sum(len(chunk.data) for chunk in batch.chunks) <= 10_000


def test_the_timeout_ends_the_run_and_everything_it_started(
    subject: tuple[Executor, Programs],
) -> None:
    executor, programs = subject
    running = Running(executor, programs.hang(timeout=1.0))
    pids = running.started(programs)
    outcome = running.result(10)
    assert outcome.ending is Ending.timeout
    assert outcome.error == "timed out after 1 s"
    assert outcome.exit_code is None
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 3)


@pytest.mark.parametrize("ignore_term", [False, True], ids=["plain", "ignoring-sigterm"])
def test_cancel_ends_the_run_within_two_seconds(
    subject: tuple[Executor, Programs], ignore_term: bool
) -> None:
    executor, programs = subject
    running = Running(executor, programs.hang(ignore_term=ignore_term))
    pids = running.started(programs)
    asked = time.monotonic()
    running.stop.stop(StopReason.cancelled)
    outcome = running.result(5)
    assert outcome.ending is Ending.stopped
    assert time.monotonic() - asked < 2
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 2)


def test_a_lost_run_ends_at_once(subject: tuple[Executor, Programs]) -> None:
    executor, programs = subject
    running = Running(executor, programs.hang(ignore_term=True))
    pids = running.started(programs)
    asked = time.monotonic()
    running.stop.stop(StopReason.lost)
    assert running.result(5).ending is Ending.stopped
    assert time.monotonic() - asked < 1
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 1)
