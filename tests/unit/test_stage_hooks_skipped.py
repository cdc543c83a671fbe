"""The dispatcher skips the span hooks of an event only when they would record and carry
nothing: without an SDK provider, for an event carrying no trace context, outside any
span. What the event publishes is then what the no-op spans would have produced."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, ProxyTracerProvider, SpanContext, TraceFlags

from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import ReceivedEvent
from pipeline.dispatch import EventDispatcher
from pipeline.handling import Emit, EventContext
from pipeline.observability import stages, tracing
from pipeline.observability.metrics import PipelineMetrics
from pipeline.retries import RetryPolicy
from schemas import Event, ExecutionRequest, ExecutionResult

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if no SDK provider were installed (a test session may have installed one)."""
    monkeypatch.setattr(trace, "get_tracer_provider", ProxyTracerProvider)
    monkeypatch.setattr(tracing, "_TRACER", trace.NoOpTracer())


def received(props: dict[str, str], seq: int = 0) -> ReceivedEvent:
    body = ExecutionRequest(request_id=f"r{seq}", code="pass").to_json_bytes()
    return ReceivedEvent(body, "0", str(seq), seq, datetime.now(UTC), f"r{seq}", props)


def test_live_only_when_a_span_could_record_or_carry_context(no_sdk: None) -> None:
    assert not stages.live(received({"kind": "request"}))
    for key in ("traceparent", "Traceparent", "Diagnostic-Id", "diagnostic-id"):
        assert stages.live(received({key: TP}))
    ctx = SpanContext(int(TRACE_ID, 16), 1, is_remote=True, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(ctx)):
        assert stages.live(received({}))  # a current context would reach the outputs


def test_live_with_an_sdk_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert stages.live(received({}))


async def echo(event: Event, ctx: EventContext) -> Sequence[Emit]:
    assert isinstance(event, ExecutionRequest)
    return [Emit("out", ExecutionResult(request_id=event.request_id, attempt=1,
                                        status="succeeded"))]  # type: ignore[arg-type]


async def test_outputs_carry_the_incoming_context_and_only_it(no_sdk: None) -> None:
    bus = MemoryBus(partitions=1)
    dispatcher = EventDispatcher(
        name="t", hub="in", consumer_group="g", handler=echo, accepts=frozenset({"request"}),
        deadletter_hub="dlq", publisher=bus.publisher(), retry=RetryPolicy(0, 0, 0),
        metrics=PipelineMetrics())
    class Ctx:
        hub, consumer_group, partition_id = "in", "g", "0"

        async def checkpoint(self, event: ReceivedEvent) -> None: ...

    assert await dispatcher.finish(Ctx(), received({"kind": "request"}, 0)) is None
    assert await dispatcher.finish(Ctx(), received({"traceparent": TP}, 1)) is None
    out = bus.hub("out").partitions[0].events
    assert "traceparent" not in out[0].properties
    carried = out[1].properties["traceparent"]
    assert carried.split("-")[1] == TRACE_ID
