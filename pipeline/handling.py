"""What a handler sees and returns, and the dead-letter record the processor makes."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pipeline.bus.ports import OutgoingEvent, ReceivedEvent
from pipeline.observability import tracing
from schemas import DeadLetter, Event


class KeyedEvent(Protocol):
    """An event that can be published: it has a request id (the partition key) and an id."""

    @property
    def request_id(self) -> str | None: ...

    @property
    def event_id(self) -> str: ...

    kind: Any

    def to_json_bytes(self) -> bytes: ...


@dataclass(frozen=True)
class Emit:
    """One output of a handler: an event for a hub, keyed by its request id."""

    hub: str
    event: KeyedEvent

    def encode(self) -> OutgoingEvent:
        key = self.event.request_id or self.event.event_id
        return OutgoingEvent(
            body=self.event.to_json_bytes(),
            partition_key=key,
            # The current trace context travels along (observability: traceparent).
            properties=tracing.inject({
                "kind": str(self.event.kind),
                "event_id": self.event.event_id,
                "request_id": self.event.request_id or "",
            }),
        )


@dataclass(frozen=True)
class EventContext:
    hub: str
    consumer_group: str
    partition_id: str
    offset: str
    sequence_number: int
    enqueued_time: datetime
    #: The processor's in-process try of this event, from 1 (not the request's repair
    #: attempt, which travels in the event itself).
    try_number: int
    #: True on the last try the processor will make: a handler that would raise a
    #: TransientError may answer instead (e.g. a final "failed" result).
    final_try: bool


Handler = Callable[[Event, EventContext], Awaitable[Sequence[Emit]]]


def dead_letter(
    event: ReceivedEvent,
    *,
    hub: str,
    consumer_group: str,
    reason: str,
    error_type: str,
    attempts: int,
    request_id: str | None,
) -> DeadLetter:
    return DeadLetter(
        request_id=request_id,
        reason=reason[:4000],
        error_type=error_type,
        attempts=attempts,
        source_hub=hub,
        consumer_group=consumer_group,
        partition_id=event.partition_id,
        offset=event.offset,
        sequence_number=event.sequence_number,
        body_b64=base64.b64encode(event.body).decode(),
        properties=dict(event.properties),
    )
