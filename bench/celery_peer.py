"""Celery's equivalent of the end-to-end benchmark (the peer we measure against).

The same work: a task that runs ``true`` in a child process (``subprocess.run``), on
prefork workers with the same total concurrency, over the same broker (RabbitMQ or
Redis), results in Redis. The workers import this module by name
(``celery -A bench.celery_peer``), configured by ``SCHED_BENCH_CELERY_*`` variables;
the bench sends from its own process and reads the results.

Needs the optional ``bench`` extra (``pip install '.[bench]'``); :func:`available`
says whether it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.deployment import BROKER_URLS, ROOT, child_env

RESULTS_URL = os.environ.get("SCHED_BENCH_CELERY_RESULTS", BROKER_URLS["redis"])
READY_TIMEOUT = 180.0  # a loaded 2-core machine starts 32 prefork children slowly


def available() -> bool:
    return importlib.util.find_spec("celery") is not None


def _app() -> Any:
    from celery import Celery

    broker = os.environ.get("SCHED_BENCH_CELERY_BROKER", BROKER_URLS["rabbitmq"])
    broker = broker.replace("amqp://", "pyamqp://", 1)
    app = Celery("bench_peer", broker=broker, backend=RESULTS_URL)
    app.conf.update(
        task_default_queue=os.environ.get("SCHED_BENCH_CELERY_QUEUE", "bench-celery"),
        result_expires=600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = _app()


@app.task(name="bench.run_true")
def run_true(sent: float) -> tuple[float, float, float]:
    """Run ``true`` as a child process; (sent, started, finished), epoch seconds."""
    started = time.time()
    subprocess.run(["true"], check=False)
    return sent, started, time.time()


def _configure(broker: str, queue: str) -> dict[str, str]:
    return {
        "SCHED_BENCH_CELERY_BROKER": BROKER_URLS[broker],
        "SCHED_BENCH_CELERY_QUEUE": queue,
    }


class CeleryNotReady(Exception):
    """Celery's workers did not answer a first task in time (a slow or broken start)."""


@contextmanager
def celery_workers(broker: str, workers: int, concurrency: int, home: Path) -> Iterator[Any]:
    """Start ``workers`` prefork workers (``-c concurrency`` each); yield a client app
    configured like them; stop them (SIGTERM, SIGKILL after 30 s) and drop the queue."""
    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    settings = _configure(broker, queue)
    os.environ.update(settings)  # the client app below is built from the same variables
    client = _app()
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        stack.callback(_drop_queue, client, queue)
        stack.callback(_stop, procs)
        for index in range(workers):
            env = {**child_env(home), **settings}
            with open(home / f"celery{index + 1}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "celery", "-A", "bench.celery_peer", "worker"]
                        + ["--pool", "prefork", "-c", str(concurrency), "-Q", queue]
                        + ["-n", f"bench{index + 1}-{queue}@localhost", "-l", "WARNING"]
                        + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
                        env=env,
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        # Ready when a task sent now comes back.
        try:
            client.send_task("bench.run_true", args=(time.time(),)).get(timeout=READY_TIMEOUT)
        except Exception as exc:  # a worker that did not start: say why, do not crash
            logs = " | ".join(
                (home / f"celery{i + 1}.log").read_text(errors="replace")[-300:].strip()
                for i in range(workers)
            )
            raise CeleryNotReady(
                f"no answer within {READY_TIMEOUT:.0f} s ({type(exc).__name__}); logs: {logs}"
            ) from exc
        yield client


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drop_queue(client: Any, queue: str) -> None:
    try:
        with client.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    except Exception as exc:  # cleaning up must not hide what the bench measured
        print(f"could not delete the Celery queue {queue}: {exc}", file=sys.stderr)


def send_burst(client: Any, count: int) -> tuple[list[Any], float]:
    """Send ``count`` tasks back to back; (results, time the first was sent)."""
    t0 = time.time()
    return [client.send_task("bench.run_true", args=(time.time(),)) for _ in range(count)], t0


def send_at_rate(client: Any, rate: float, seconds: float) -> list[Any]:
    """Send tasks on a fixed schedule (``rate`` per second for ``seconds``)."""
    results = []
    start = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        results.append(client.send_task("bench.run_true", args=(time.time(),)))
    return results


def collect(results: list[Any], timeout: float) -> list[tuple[float, float, float]]:
    """(sent, started, finished) of the tasks that finished within ``timeout``."""
    deadline = time.monotonic() + timeout
    done = []
    for result in results:
        left = deadline - time.monotonic()
        try:
            done.append(tuple(result.get(timeout=max(0.01, left), propagate=False)))
        except Exception:  # timed out or failed: counted as not completed
            continue
    return done  # type: ignore[return-value]
