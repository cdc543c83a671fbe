"""Inspect and replay the dead-letter hub.

Replay publishes each record's raw body, byte for byte, back to the hub it came from, with
the request id as partition key: the event gets a fresh chance once its cause is fixed.
Because every handler is idempotent on ``(request_id, attempt)``, replaying an event that
did get through after all is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from pipeline.bus.ports import Bus, OutgoingEvent, PartitionContext, ReceivedEvent
from schemas import DeadLetter, DecodeError, HubNames, decode_event


class DeadLetterReader:
    def __init__(self) -> None:
        self.records: list[DeadLetter] = []
        self.last_event = asyncio.get_running_loop().time()

    async def on_open(self, ctx: PartitionContext) -> None: ...

    async def on_close(self, ctx: PartitionContext, reason: str) -> None: ...

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        self.last_event = asyncio.get_running_loop().time()
        for event in events:
            with contextlib.suppress(DecodeError):
                record = decode_event(event.body)
                if isinstance(record, DeadLetter):
                    self.records.append(record)


async def read_dead_letters(bus: Bus, hubs: HubNames, *, idle_s: float = 3.0,
                            consumer_group: str = "deadletter-inspect") -> list[DeadLetter]:
    """Every dead letter from the start of the hub, read until it has been quiet ``idle_s``."""
    reader = DeadLetterReader()
    sub = bus.subscribe(hubs.deadletter, consumer_group, start="earliest")
    task = asyncio.create_task(sub.run(reader))
    try:
        # A quiet period, not a condition: polling is the point.
        while (quiet := asyncio.get_running_loop().time() - reader.last_event) < idle_s:  # noqa: ASYNC110
            await asyncio.sleep(idle_s - quiet)  # re-check: events may have come meanwhile
    finally:
        await sub.stop()
        await task
    return reader.records


async def replay(bus: Bus, records: Sequence[DeadLetter],
                 keep: Callable[[DeadLetter], bool] = lambda _: True) -> int:
    publisher = bus.publisher()
    chosen = [r for r in records if keep(r)]
    for record in chosen:
        key = record.request_id or record.properties.get("request_id") or None
        await publisher.publish(record.source_hub, [
            OutgoingEvent(record.body, partition_key=key, properties=dict(record.properties))
        ])
    return len(chosen)
