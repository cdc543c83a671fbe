"""Publish requests: the request id is the partition key, so one request stays in order."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.bus.ports import Publisher
from pipeline.handling import Emit
from pipeline.observability import stages
from schemas import ExecutionRequest


class RequestProducer:
    def __init__(self, publisher: Publisher, hub: str) -> None:
        self._publisher = publisher
        self._hub = hub

    async def submit(self, request: ExecutionRequest) -> str:
        """Publish one request; returns its request id (re-publishing it is idempotent)."""
        await self.submit_many([request])
        return request.request_id

    async def submit_many(self, requests: Sequence[ExecutionRequest]) -> list[str]:
        # One publish span per request, open until the batch is sent: each request's trace
        # starts here (inside the caller's trace when it has one).
        with stages.submitting(self._hub) as encode:
            await self._publisher.publish(self._hub, [encode(Emit(self._hub, r)) for r in requests])
        return [r.request_id for r in requests]

    async def close(self) -> None:
        await self._publisher.close()
