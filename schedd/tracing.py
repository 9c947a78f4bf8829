"""OpenTelemetry spans of a run's way: fire -> dispatch -> claim -> execute -> report.

Off by default (``observability.tracing_enabled``). When off, nothing here imports
OpenTelemetry and every call is a cheap no-op (:func:`start` returns None), so the
packages are an optional extra (``pip install 'sched[tracing]'``) and ``schedd --help``
stays fast. When on, :func:`setup` (called by the daemon at start) imports the SDK and
the OTLP/HTTP exporter and sends spans in batches to
``observability.otlp_endpoint``/v1/traces; a missing extra is a ConfigError naming it.

A run's trace context travels as a W3C ``traceparent`` string: stored on the run row
(``task_runs.trace_context``, the context of the span that created the run: the API's
trigger, the scheduler's fire, retry or dependency release) and carried in broker
messages (the context of the dispatch span). The worker's claim span continues the
message's context (or the row's, with the database broker), execute continues the
claim, report continues execute. A retry's span continues its parent run's context,
so every attempt of one fire or trigger is one trace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from schedd.brokers.base import Message
from schedd.errors import ConfigError

Attribute = str | int | float | bool

log = logging.getLogger("schedd.tracing")

EXTRA = "tracing"
INSTRUMENTATION = "schedd"

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None
_propagator: Any = None


def enabled() -> bool:
    return _tracer is not None


def setup(
    *,
    endpoint: str,
    service: str,
    attributes: Mapping[str, str] | None = None,
    exporter: Any = None,
    source: str = "configuration",
) -> None:
    """Turn tracing on for this process: spans go to ``endpoint`` over OTLP/HTTP, or to
    ``exporter`` (a SpanExporter: tests pass the SDK's in-memory one)."""
    global _tracer, _provider, _propagator
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise ConfigError(
            source,
            "observability.tracing_enabled",
            f"true needs the OpenTelemetry packages, which are not installed ({exc.name}): "
            f"pip install 'sched[{EXTRA}]', or set it to false",
        ) from None
    resource = Resource.create({"service.name": service, **(attributes or {})})
    provider = TracerProvider(resource=resource)
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                source,
                "observability.tracing_enabled",
                f"true needs the OTLP/HTTP exporter, which is not installed ({exc.name}): "
                f"pip install 'sched[{EXTRA}]', or set it to false",
            ) from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(traces_url(endpoint))))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider = provider
    _propagator = TraceContextTextMapPropagator()
    _tracer = provider.get_tracer(INSTRUMENTATION)
    log.info("tracing on: spans go to %s", "a test exporter" if exporter else traces_url(endpoint))


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base endpoint (as OTEL_EXPORTER_OTLP_
    ENDPOINT is read): ``http://host:4318`` -> ``http://host:4318/v1/traces``."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def shutdown() -> None:
    """Export what is buffered and turn tracing off."""
    global _tracer, _provider, _propagator
    provider = _provider
    _tracer = _provider = _propagator = None
    if provider is not None:
        provider.shutdown()


class Span:
    """One started span; :meth:`end` records it (a span never ended is never sent)."""

    def __init__(self, span: Any) -> None:
        self._span = span

    @property
    def traceparent(self) -> str | None:
        """This span's context as a W3C ``traceparent`` header value."""
        if _propagator is None:
            return None
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(self._span))
        return carrier.get("traceparent")

    def set(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)

    def end(self, error: str | None = None) -> None:
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()


def start(
    name: str,
    *,
    parent: str | None = None,
    attributes: Mapping[str, Attribute | None] | None = None,
) -> Span | None:
    """Start a span continuing the W3C ``parent`` context (a new trace without one);
    None while tracing is off."""
    tracer = _tracer
    if tracer is None:
        return None
    context = None
    if parent:
        context = _propagator.extract({"traceparent": parent})
    values = {k: v for k, v in (attributes or {}).items() if v is not None}
    return Span(tracer.start_span(name, context=context, attributes=values))


@contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    attributes: Mapping[str, Attribute | None] | None = None,
) -> Iterator[Span | None]:
    """:func:`start` as a context manager: ended on exit, with the error if one is raised."""
    started = start(name, parent=parent, attributes=attributes)
    if started is None:
        yield None
        return
    try:
        yield started
    except BaseException as exc:
        started.end(error=f"{type(exc).__name__}: {exc}")
        raise
    started.end()


def traceparent(started: Span | None) -> str | None:
    return started.traceparent if started is not None else None


@contextmanager
def dispatching(messages: Sequence[Message], broker: str) -> Iterator[Sequence[Message]]:
    """Dispatch spans around a publish: one per message with a trace context, each a
    child of the run's creation span; yields the messages carrying the dispatch span's
    context (what the worker's claim continues). The same messages while tracing is
    off."""
    if _tracer is None or not any(m.traceparent for m in messages):
        yield messages
        return
    spans: list[Span] = []
    carried: list[Message] = []
    for message in messages:
        started = (
            start(
                "run.dispatch",
                parent=message.traceparent,
                attributes={"sched.run_id": message.run_id, "messaging.system": broker},
            )
            if message.traceparent
            else None
        )
        if started is None:
            carried.append(message)
            continue
        spans.append(started)
        carried.append(replace(message, traceparent=started.traceparent))
    try:
        yield carried
    except BaseException as exc:
        for started in spans:
            started.end(error=f"{type(exc).__name__}: {exc}")
        raise
    for started in spans:
        started.end()
