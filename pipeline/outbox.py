"""Outputs that could not be published yet: kept (never recomputed) and re-published, with
capped backoff, until they go.

When an event's outputs (or its dead-letter record) are still refused after the bounded
in-process retries, the partition run hands them here instead of leaving the event
unfinished for good. The event stays unfinished in the checkpoint window until its
outputs leave; later events of the same request wait behind it (:meth:`Outbox.wait_for`);
and every partition of a processor shares one :class:`UnpublishedBudget`, so intake pauses
while too much is waiting and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from pipeline.bus.ports import OutgoingEvent, ReceivedEvent

log = structlog.get_logger(__name__)

#: Smallest size one kept delivery counts for, so many tiny ones still add up.
MIN_ENTRY_BYTES = 1024


@dataclass
class Delivery:
    """The encoded outputs of one event, by hub, not all published yet. Batches leave the
    list as they are published, so a re-publish sends only what has not gone."""

    batches: list[tuple[str, list[OutgoingEvent]]]
    request_id: str | None
    #: What was encoded (for counting what was published, by kind and status).
    emits: list[Any] = field(default_factory=list)
    error: str = ""
    since: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        body = sum(len(e.body) for _, events in self.batches for e in events)
        return max(MIN_ENTRY_BYTES, body)


class UnpublishedBudget:
    """Bytes of kept outputs across a processor's partitions; intake waits above the bound."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._changed = asyncio.Condition()

    async def room(self) -> None:
        """Return once kept outputs are below the bound."""
        if self.used < self.max_bytes:
            return
        log.warning("intake.paused", unpublished_bytes=self.used, bound=self.max_bytes)
        async with self._changed:
            await self._changed.wait_for(lambda: self.used < self.max_bytes)
        log.info("intake.resumed", unpublished_bytes=self.used)

    def take(self, size: int) -> None:
        self.used += size

    async def give_back(self, size: int) -> None:
        self.used -= size
        async with self._changed:
            self._changed.notify_all()


#: Publishes a delivery until it goes (the dispatcher's capped, unbounded retry).
Redeliver = Callable[[ReceivedEvent, Delivery], Awaitable[None]]
#: Called once an event's kept outputs have all left.
Delivered = Callable[[ReceivedEvent], Awaitable[None]]


class Outbox:
    """One partition's kept deliveries, each re-published by its own task."""

    def __init__(self, redeliver: Redeliver, delivered: Delivered,
                 budget: UnpublishedBudget) -> None:
        self._redeliver = redeliver
        self._delivered = delivered
        self._budget = budget
        self._entries: dict[int, tuple[Delivery, asyncio.Task[None]]] = {}
        self._by_request: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def keep(self, event: ReceivedEvent, delivery: Delivery) -> None:
        size = delivery.size
        self._budget.take(size)
        task = asyncio.create_task(self._send(event, delivery, size),
                                   name=f"outbox-{event.partition_id}-{event.sequence_number}")
        self._entries[event.sequence_number] = (delivery, task)
        if delivery.request_id:
            self._by_request[delivery.request_id] = task
        log.warning("output.kept", sequence_number=event.sequence_number,
                    request_id=delivery.request_id, error=delivery.error)

    async def _send(self, event: ReceivedEvent, delivery: Delivery, size: int) -> None:
        try:
            await self._redeliver(event, delivery)
        finally:
            self._entries.pop(event.sequence_number, None)
            if delivery.request_id and self._by_request.get(delivery.request_id) is \
                    asyncio.current_task():
                del self._by_request[delivery.request_id]
            await self._budget.give_back(size)
        log.info("output.published_late", sequence_number=event.sequence_number,
                 request_id=delivery.request_id,
                 after_s=round(time.monotonic() - delivery.since, 3))
        await self._delivered(event)

    async def wait_for(self, request_id: str) -> None:
        """Return once no output of ``request_id`` is waiting to be published."""
        while (task := self._by_request.get(request_id)) is not None:
            await asyncio.wait([task])

    def oldest(self) -> Delivery | None:
        return min((d for d, _ in self._entries.values()), key=lambda d: d.since, default=None)

    def tasks(self) -> set[asyncio.Task[None]]:
        return {task for _, task in self._entries.values()}

    async def close(self) -> None:
        tasks = self.tasks()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
