"""The processor's spans, one helper per stage, so the consume loop carries one-line hooks.

Per received event: ``<hub> process`` (a CONSUMER span, child of the context the event was
published in), holding ``decode``, the handler's own spans and ``<hub> publish`` (a
PRODUCER span; the events it publishes carry it, so the next hop is its child). A
checkpoint covers many events: its span is a child of the context of the event it
checkpoints up to, linked to nothing else (one trace per request, not per batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
)

from pipeline.bus.ports import OutgoingEvent, ReceivedEvent
from pipeline.observability import tracing

#: The span the hooks of an event that is not :func:`live` hand out.
NO_SPAN: Span = INVALID_SPAN
_INERT_PROVIDERS = (ProxyTracerProvider, NoOpTracerProvider)
_CONTEXT_KEYS = frozenset({tracing.TRACEPARENT, tracing.DIAGNOSTIC_ID.lower()})


def live(event: ReceivedEvent) -> bool:
    """Whether ``event``'s spans would record or carry anything. False when no SDK
    provider is installed (the API's default makes every span a no-op), the event carries
    no trace context and none is current: the no-op spans would then be the invalid span,
    and what the event publishes carries no context, so the stage hooks may be skipped
    (they cost more than a no-op event's whole handling). Checked per event: a provider
    may be installed at any time."""
    return (not isinstance(trace.get_tracer_provider(), _INERT_PROVIDERS)
            or not _CONTEXT_KEYS.isdisjoint(map(str.lower, event.properties))
            or trace.get_current_span().get_span_context().is_valid)


@contextmanager
def processing(worker: str, hub: str, consumer_group: str,
               event: ReceivedEvent) -> Iterator[Span]:
    with tracing.span(
        f"{hub} process", kind=SpanKind.CONSUMER, parent=tracing.extract(event.properties),
        semconv={"messaging.system": "eventhubs", "messaging.operation.type": "process",
                 "messaging.destination.name": hub,
                 "messaging.consumer.group.name": consumer_group,
                 "messaging.destination.partition.id": event.partition_id,
                 "messaging.eventhubs.message.enqueued_time": event.enqueued_time.isoformat()},
        worker=worker, sequence_number=event.sequence_number, offset=event.offset,
    ) as current:
        yield current


@contextmanager
def decoding() -> Iterator[Span]:
    with tracing.span("decode") as current:
        yield current


def decoded(current: Span, kind: str, request_id: str | None, attempt: int) -> None:
    tracing.set_attributes(current, kind=str(kind), request_id=request_id, attempt=attempt)


@contextmanager
def publishing(hub: str, emits: Sequence[Any]) -> Iterator[Span]:
    kinds = sorted({str(e.event.kind) for e in emits})
    with tracing.span(f"{hub} publish", kind=SpanKind.PRODUCER,
                      semconv={"messaging.system": "eventhubs",
                               "messaging.operation.type": "send",
                               "messaging.destination.name": hub,
                               "messaging.batch.message_count": len(emits)},
                      kinds=kinds) as current:
        yield current


@contextmanager
def submitting(hub: str) -> Iterator[Callable[[Any], OutgoingEvent]]:
    """For a producer publishing a batch: ``encode(emit)`` opens one PRODUCER span per
    event (each a sibling under the caller's context, so every request gets its own trace
    unless the caller is in one) and encodes the event inside it; the spans end when the
    block does, i.e. after the batch was sent."""
    parent = otel_context.get_current()
    spans: list[Span] = []

    def encode(emit: Any) -> OutgoingEvent:
        current = tracing.start_span(
            f"{hub} publish", kind=SpanKind.PRODUCER, parent=parent,
            semconv={"messaging.system": "eventhubs", "messaging.operation.type": "send",
                     "messaging.destination.name": hub},
            request_id=getattr(emit.event, "request_id", None),
            kind_of_event=str(emit.event.kind))
        spans.append(current)
        with trace.use_span(current, end_on_exit=False):
            out: OutgoingEvent = emit.encode()
        return out

    try:
        yield encode
    except BaseException as exc:
        for current in spans:
            current.record_exception(exc)
            tracing.mark_error(current, str(exc))
        raise
    finally:
        for current in spans:
            current.end()


def dead_lettered(cause: str, reason: str) -> None:
    current = trace.get_current_span()
    tracing.set_attributes(current, deadletter_cause=cause)
    tracing.mark_error(current, f"dead-lettered ({cause}): {reason.splitlines()[0]}")


def retrying(tries: int, exc: BaseException) -> None:
    trace.get_current_span().add_event("retry", {"llmexec.tries": tries,
                                                  "exception.message": str(exc)[:500]})


@contextmanager
def checkpointing(hub: str, consumer_group: str, partition_id: str,
                  target: ReceivedEvent, pending: int | None = None) -> Iterator[Span]:
    with tracing.span(
        "checkpoint", parent=tracing.extract(target.properties),
        semconv={"messaging.destination.name": hub,
                 "messaging.consumer.group.name": consumer_group,
                 "messaging.destination.partition.id": partition_id},
        sequence_number=target.sequence_number, offset=target.offset, covered=pending,
    ) as current:
        yield current
