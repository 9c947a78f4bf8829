"""Tracing: one trace per run (and its retries) across api, scheduler and worker.

In process with the SDK's in-memory exporter (API served by uvicorn, a worker role, a
scheduler pass), and as three real `schedd run` processes on PostgreSQL + RabbitMQ
exporting over OTLP/HTTP to a receiver this test runs (it decodes the protobuf
export requests): the trace context crosses process boundaries in the run row and in
the broker's message headers.
"""

from __future__ import annotations

import gzip
import http.server
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schedd import tracing
from schedd.brokers.database import DatabaseBroker
from schedd.db import Database, create_database
from schedd.errors import ConfigError
from schedd.scheduler.passes import Scheduler
from schedd.services import auth
from schedd.services.claims import runs as runs_table
from tests import proc
from tests.apikit import api_env
from tests.schedctlserver import free_port
from tests.scheduler_support import runs_of
from tests.workerkit import make_task, running_worker, settings_for, wait_until

sdk_export = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

WAY = ["worker.claim", "worker.execute", "worker.report"]


@pytest.fixture
def exporter() -> Iterator[Any]:
    memory = sdk_export.InMemorySpanExporter()
    tracing.setup(endpoint="http://127.0.0.1:9", service="schedd-test", exporter=memory)
    yield memory
    tracing.shutdown()


def ended(db: Database, task_id: int, count: int) -> bool:
    runs = runs_of(db, task_id)
    return len(runs) == count and all(r.status in ("failed", "completed") for r in runs)


def test_a_triggered_run_and_its_retry_are_one_trace(
    db: Database, tmp_path: Path, exporter: Any
) -> None:
    settings = settings_for(str(db.engine.url.render_as_string(hide_password=False)), tmp_path)
    broker = DatabaseBroker(settings, db)
    task_id = make_task(db, "exit 3", retry_count=1, retry_delay_seconds=0)
    scheduler = Scheduler(db, broker, settings)
    with api_env(db, tmp_path, broker) as api, running_worker(db, tmp_path):
        reply = api.client.post(f"/api/tasks/{task_id}/trigger", headers=api.admin)
        assert reply.status_code == 202, reply.text
        assert wait_until(lambda: ended(db, task_id, 1), 20)
        # The scheduler creates the retry (due at once) and hands it over.
        assert wait_until(lambda: (scheduler.run_pass(), ended(db, task_id, 2))[1], 20)
        assert wait_until(lambda: len(exporter.get_finished_spans()) >= 10, 10)
    broker.close()

    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {spans[0].context.trace_id}, spans
    by_name: dict[str, list[Any]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    trigger = by_name["run.trigger"][0]
    assert trigger.parent is None  # the trace starts at the API's trigger
    retry = by_name["scheduler.retry"][0]
    assert retry.parent.span_id == trigger.context.span_id
    # Each attempt: dispatch -> claim -> execute -> report, in a chain.
    first, second = runs_of(db, task_id)
    assert by_name["run.dispatch"][0].parent.span_id == trigger.context.span_id
    for attempt, parent in ((first, trigger), (second, retry)):
        (claim,) = [
            s for s in by_name["worker.claim"] if s.attributes["sched.run_id"] == attempt.id
        ]
        (execute,) = [
            s for s in by_name["worker.execute"] if s.attributes["sched.run_id"] == attempt.id
        ]
        (report,) = [
            s for s in by_name["worker.report"] if s.attributes["sched.run_id"] == attempt.id
        ]
        assert claim.parent.span_id == parent.context.span_id  # the row's context
        assert execute.parent.span_id == claim.context.span_id
        assert report.parent.span_id == execute.context.span_id
        assert execute.attributes["process.exit_code"] == 3
        assert not execute.status.is_ok
        # The row keeps the context of the span that created it.
        assert attempt.trace_context is not None
        version, trace_id, span_id, _flags = attempt.trace_context.split("-")
        assert (version, trace_id, span_id) == (
            "00",
            f"{parent.context.trace_id:032x}",
            f"{parent.context.span_id:016x}",
        )


def test_tracing_off_imports_no_opentelemetry_sdk(tmp_path: Path) -> None:
    # (FastAPI imports the OpenTelemetry API by itself when it is installed; the SDK and
    # the exporter, what costs start-up time, come only with tracing on.)
    code = (
        "import sys; from schedd.worker import role; from schedd.scheduler import passes; "
        "from schedd.api import app; from schedd import tracing; "
        "assert tracing.start('x') is None; "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'google.protobuf'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_on_without_the_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.resources", None)
    with pytest.raises(ConfigError) as raised:
        tracing.setup(endpoint="http://127.0.0.1:4318", service="schedd", source="/etc/x.toml")
    message = str(raised.value)
    assert message.startswith("/etc/x.toml: observability.tracing_enabled: ")
    assert "pip install 'sched[tracing]'" in message
    assert not tracing.enabled()


def test_the_traces_url_follows_the_otlp_convention() -> None:
    assert tracing.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert tracing.traces_url("https://c/v1/traces") == "https://c/v1/traces"


# --- three processes, OTLP/HTTP -------------------------------------------------------


class Receiver:
    """A minimal OTLP/HTTP trace receiver: decodes each export request's spans."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []  # (the exporting process's roles, span)
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces"
                if ok:
                    receiver.take(body)
                reply = trace_service.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, body: bytes) -> None:
        request = trace_service.ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                with self.lock:
                    self.spans.extend((attributes["sched.roles"], s) for s in scope.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.external_service
@pytest.mark.slow
def test_one_trace_crosses_the_api_scheduler_and_worker_processes(
    pg_url: str, rabbitmq_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    db = create_database(pg_url)
    port = free_port()
    env = {
        "DATABASE_URL": pg_url,
        "SCHEDD_MESSAGE_QUEUE__TYPE": "rabbitmq",
        "RABBITMQ_URL": rabbitmq_url,
        "SCHEDD_WORKER__TASK_TYPES": f"trace{port}",  # a queue of its own on the broker
        "JWT_SECRET": "trace-test-" + "t" * 40,
        "API_PORT": str(port),
        "SCHEDD_SCHEDULER__SCHEDULING_INTERVAL": "0.5",
        "SCHEDD_OBSERVABILITY__TRACING_ENABLED": "true",
        "SCHEDD_OBSERVABILITY__OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 100 ms, not every 5 s
    }
    procs = []
    try:
        for role in ("api", "scheduler", "worker"):
            with (tmp_path / f"{role}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        proc.schedd("run", "--role", role),
                        env=proc.isolated_env(tmp_path, env),
                        cwd=tmp_path,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

        def logs() -> str:
            return "\n".join(
                f"-- {p.name}\n{p.read_text()[-2000:]}" for p in tmp_path.glob("*.log")
            )

        def started() -> bool:
            return all(b" started" in p.read_bytes() for p in tmp_path.glob("*.log"))

        assert wait_until(started, 90), logs()
        task_id = make_task(
            db, "exit 3", retry_count=1, retry_delay_seconds=0, task_type=f"trace{port}"
        )
        with db.session() as session:
            key = auth.create_api_key(session, "t", ["task.execute"], creator=None).key
        reply = httpx.post(
            f"http://127.0.0.1:{port}/api/tasks/{task_id}/trigger",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 202, reply.text
        assert wait_until(lambda: ended(db, task_id, 2), 60), logs()

        def complete() -> bool:
            with receiver.lock:
                return sum(1 for _, s in receiver.spans if s.name == "worker.report") >= 2

        assert wait_until(complete, 30), (receiver.spans, logs())
        with db.session() as session:
            contexts = session.execute(
                runs_table.select().where(runs_table.c.task_id == task_id)
            ).all()
        assert all(row.trace_context for row in contexts)
    finally:
        for process in procs:
            process.send_signal(signal.SIGTERM)
        for process in procs:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        receiver.close()
        db.dispose()

    spans = list(receiver.spans)
    trace_ids = {s.trace_id for _, s in spans}
    assert len(trace_ids) == 1, spans
    where = {(roles, s.name) for roles, s in spans}
    assert {
        ("api", "run.trigger"),
        ("api", "run.dispatch"),
        ("scheduler", "scheduler.retry"),
        ("scheduler", "run.dispatch"),
        ("worker", "worker.claim"),
        ("worker", "worker.execute"),
        ("worker", "worker.report"),
    } <= where
    ids = {s.span_id: (roles, s.name) for roles, s in spans}
    # The worker's claims continue the dispatch spans (the context in the AMQP headers).
    claims = [s for _, s in spans if s.name == "worker.claim"]
    assert len(claims) == 2
    assert all(
        ids[c.parent_span_id] == (p, "run.dispatch")
        for c, p in zip(
            sorted(claims, key=lambda c: c.start_time_unix_nano), ("api", "scheduler"), strict=True
        )
    )
