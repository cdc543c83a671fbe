"""The dispatcher binds an event's place and request for the handler's logs, and unbinds
them after, restoring what the caller had bound."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import ReceivedEvent
from pipeline.dispatch import EventDispatcher
from pipeline.handling import Emit, EventContext
from pipeline.observability.metrics import PipelineMetrics
from pipeline.retries import RetryPolicy
from schemas import Event, ExecutionRequest


class Ctx:
    hub, consumer_group, partition_id = "in", "g", "3"

    async def checkpoint(self, event: ReceivedEvent) -> None: ...


def received(body: bytes, seq: int = 7) -> ReceivedEvent:
    return ReceivedEvent(body, "3", "70", seq, datetime.now(UTC), None, {})


async def test_the_handler_sees_the_event_bound_and_the_callers_context_comes_back() -> None:
    seen: list[dict[str, object]] = []

    async def handler(event: Event, ctx: EventContext) -> Sequence[Emit]:
        seen.append(get_contextvars())
        return []

    metrics = PipelineMetrics()
    dispatcher = EventDispatcher(
        name="w", hub="in", consumer_group="g", handler=handler, accepts=frozenset({"request"}),
        deadletter_hub="dlq", publisher=MemoryBus().publisher(), retry=RetryPolicy(0, 0, 0),
        metrics=metrics)
    tokens = bind_contextvars(request_id="outer", other="kept")
    try:
        body = ExecutionRequest(request_id="r1", code="pass").to_json_bytes()
        assert await dispatcher.finish(Ctx(), received(body)) is None
        assert get_contextvars() == {"request_id": "outer", "other": "kept"}
        # A body that does not decode is dead-lettered with its place bound, then unbound.
        with structlog.testing.capture_logs() as logs:
            assert await dispatcher.finish(Ctx(), received(b"not json", 8)) is None
        assert get_contextvars() == {"request_id": "outer", "other": "kept"}
    finally:
        reset_contextvars(**tokens)
    assert seen == [{"request_id": "r1", "other": "kept", "worker": "w", "hub": "in",
                     "partition": "3", "offset": "70", "sequence_number": 7, "attempt": 1}]
    assert [entry["event"] for entry in logs] == ["event.deadletter"]
    assert metrics.registry.get_sample_value(
        "llmexec_events_processed_total", {"worker": "w", "hub": "in", "outcome": "ok"}) == 1
    assert metrics.registry.get_sample_value(
        "llmexec_deadletters_total", {"worker": "w", "hub": "in", "cause": "malformed"}) == 1
