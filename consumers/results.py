"""Read results: follow the results hub, deduplicated, and wait for given requests.

A request that was dead-lettered on its way (say, a worker could not handle it) is answered
too: the follower also reads the dead-letter hub and turns a record that names a request it
waits for into a ``failed`` result, so a waiting caller is never left hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from consumers.dedupe import Deduplicator
from pipeline.bus.ports import Bus, PartitionContext, ReceivedEvent, StartPosition
from schemas import (
    DeadLetter,
    DecodeError,
    ErrorInfo,
    ExecutionResult,
    HubNames,
    ResultStatus,
    decode_event,
)


def result_from_dead_letter(record: DeadLetter) -> ExecutionResult:
    assert record.request_id is not None
    return ExecutionResult(
        request_id=record.request_id, attempt=0, status=ResultStatus.FAILED,
        error=ErrorInfo(code="deadlettered", message=record.reason.splitlines()[0],
                        details={"source_hub": record.source_hub,
                                 "partition_id": record.partition_id,
                                 "sequence_number": record.sequence_number}),
    )


class _Collector:
    def __init__(self, queue: asyncio.Queue[ExecutionResult], dedupe: Deduplicator) -> None:
        self._queue = queue
        self._dedupe = dedupe

    async def on_open(self, ctx: PartitionContext) -> None:
        return None

    async def on_close(self, ctx: PartitionContext, reason: str) -> None:
        return None

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        for event in events:
            try:
                decoded = decode_event(event.body)
            except DecodeError:
                continue  # not ours to judge; the dead-letter hub may carry anything
            if isinstance(decoded, DeadLetter):
                if decoded.request_id is None:
                    continue
                decoded = result_from_dead_letter(decoded)
            if isinstance(decoded, ExecutionResult) and self._dedupe.first_time(decoded.dedupe_key):
                await self._queue.put(decoded)


class ResultFollower:
    def __init__(self, bus: Bus, hubs: HubNames, *, consumer_group: str = "results-follower",
                 start: StartPosition = "earliest", include_dead_letters: bool = True) -> None:
        self._queue: asyncio.Queue[ExecutionResult] = asyncio.Queue()
        collector = _Collector(self._queue, Deduplicator())
        hub_names = [hubs.results] + ([hubs.deadletter] if include_dead_letters else [])
        self._subs = [bus.subscribe(h, consumer_group, start=start) for h in hub_names]
        self._tasks = [asyncio.create_task(s.run(collector)) for s in self._subs]

    async def results(self) -> AsyncIterator[ExecutionResult]:
        while True:
            yield await self._queue.get()

    async def wait_for(self, request_ids: Iterable[str], timeout_s: float | None = None,
                       on_result: Callable[[ExecutionResult], None] | None = None,
                       ) -> dict[str, ExecutionResult]:
        """One result per request id (the first that arrives); raises TimeoutError.
        ``on_result`` is told each one as it arrives (progress)."""
        wanted = set(request_ids)
        got: dict[str, ExecutionResult] = {}

        async def collect() -> None:
            async for result in self.results():
                if result.request_id in wanted and result.request_id not in got:
                    got[result.request_id] = result
                    if on_result is not None:
                        on_result(result)
                    if len(got) == len(wanted):
                        return

        if wanted:
            await asyncio.wait_for(collect(), timeout_s)
        return got

    async def close(self) -> None:
        for sub in self._subs:
            await sub.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
