"""OpenTelemetry tracing: one trace per request, carried across hubs in event properties.

The W3C ``traceparent`` (and ``tracestate``) travel as event properties: :func:`inject`
writes the current context into an outgoing event's properties (``Emit.encode`` calls it,
so the producer, every worker and the reconciler carry it), :func:`extract` reads it from a
received event. A producer that sets only the Azure SDK's ``Diagnostic-Id`` (the SDK's own
tracing writes the same W3C value there) is read too.

Without ``OTEL_*`` configuration nothing is exported: the API's default provider makes
every span a no-op. :func:`configure_tracing` installs the SDK with an OTLP exporter when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` / ``OTEL_TRACES_EXPORTER=none`` are not), and never replaces a
provider somebody else installed (an application embedding us, or a test).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pipeline.errors import ConfigError

TRACEPARENT, TRACESTATE, DIAGNOSTIC_ID = "traceparent", "tracestate", "Diagnostic-Id"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("llmexec")  # a proxy: follows whatever provider is installed



def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with an OTLP exporter if the ``OTEL_*`` variables ask for one.
    Returns True when it did; False leaves the no-op default (or a provider already set)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    from opentelemetry.sdk.resources import Resource  # the SDK only when exporting
    from opentelemetry.sdk.trace import TracerProvider

    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                       env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
    if protocol != "http/protobuf":
        raise ConfigError(f"invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} "
                          "is not supported (use http/protobuf)")
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our default name.
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def shutdown_tracing() -> None:
    """Flush spans still buffered (at service exit)."""
    shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
    if callable(shutdown):
        shutdown()


# -- propagation -------------------------------------------------------------------------

def inject(properties: Mapping[str, str]) -> dict[str, str]:
    """``properties`` plus the current trace context (unchanged when there is none, or
    when the caller already put a ``traceparent`` there: theirs wins)."""
    out = dict(properties)
    if TRACEPARENT not in out:
        _PROPAGATOR.inject(out)
    return out


def extract(properties: Mapping[str, str]) -> Context:
    """The context an event was published in (W3C, else the Azure SDK's Diagnostic-Id)."""
    carrier = {k.lower(): v for k, v in properties.items()}
    if TRACEPARENT not in carrier and DIAGNOSTIC_ID.lower() in carrier:
        carrier = {TRACEPARENT: carrier[DIAGNOSTIC_ID.lower()]}
    return _PROPAGATOR.extract(carrier)


# -- spans -------------------------------------------------------------------------------

@contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Context | None = None,
         semconv: Mapping[str, Any] | None = None, **attributes: Any) -> Iterator[Span]:
    """A span, current inside the block: ``semconv`` attributes named as given, the others
    under ``llmexec.``; None values are left out. An exception leaving the block marks the
    span as an error (and is re-raised)."""
    with _TRACER.start_as_current_span(name, context=parent, kind=kind,
                                       attributes=_attrs(attributes, semconv),
                                       record_exception=True,
                                       set_status_on_exception=True) as current:
        yield current


def start_span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Context | None = None,
               semconv: Mapping[str, Any] | None = None, **attributes: Any) -> Span:
    """A span that is not made current and ends when the caller ends it."""
    return _TRACER.start_span(name, context=parent, kind=kind,
                              attributes=_attrs(attributes, semconv))


def set_attributes(current: Span, **attributes: Any) -> None:
    current.set_attributes(_attrs(attributes))


def mark_error(current: Span, description: str) -> None:
    current.set_status(Status(StatusCode.ERROR, description[:200]))


def _attrs(attributes: Mapping[str, Any],
           semconv: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out = {k: _attr(v) for k, v in (semconv or {}).items() if v is not None}
    out.update({f"llmexec.{k}": _attr(v) for k, v in attributes.items() if v is not None})
    return out


def _attr(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span, hex, for logs; None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def add_trace_ids(_: Any, __: str,
                  event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every log line inside a span carries its trace and span id."""
    ids = current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


# -- contexts kept across a detached step (a heavy Job, reported later) ------------------

_KEPT: OrderedDict[tuple[str, int], Context] = OrderedDict()
_KEPT_MAX = 10_000


def remember(request_id: str, attempt: int) -> None:
    """Keep the current context for a later step of the same attempt in this process (the
    reconciler's report of a detached heavy Job); bounded, oldest dropped first."""
    _KEPT[(request_id, attempt)] = otel_context.get_current()
    _KEPT.move_to_end((request_id, attempt))
    while len(_KEPT) > _KEPT_MAX:
        _KEPT.popitem(last=False)


def recall(request_id: str, attempt: int) -> Context | None:
    """The context :func:`remember` kept (None after a restart: the report then starts a
    trace of its own)."""
    return _KEPT.pop((request_id, attempt), None)
