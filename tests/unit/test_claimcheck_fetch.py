"""Claim-check fetches: transient store errors are retried (RetryPolicy), a missing payload
(PayloadMissingError) is not."""

from __future__ import annotations

from pipeline.bus.claimcheck import ClaimCheckBus
from pipeline.bus.memory import MemoryBus, MemoryPayloadStore
from pipeline.bus.ports import OutgoingEvent
from pipeline.errors import BusUnavailableError
from pipeline.retries import RetryPolicy
from tests.unit.test_claimcheck import read_all


class Flaky(MemoryPayloadStore):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.gets = 0

    async def get(self, ref: str) -> bytes:
        self.gets += 1
        if self.gets <= self.failures:
            raise BusUnavailableError("blob storage unreachable")
        return await super().get(ref)


FAST = RetryPolicy(max_retries=2, backoff_s=0.001, backoff_max_s=0.01)
BIG = b"q" * (2 * 1024 * 1024)


async def test_a_transient_fetch_error_is_retried() -> None:
    store = Flaky(failures=2)
    async with ClaimCheckBus(MemoryBus(partitions=1), store, fetch_retry=FAST) as bus:
        await bus.publisher().publish("h", [OutgoingEvent(BIG, "k")])
        (event,) = await read_all(bus, "h", 1)
    assert event.body == BIG and store.gets == 3


async def test_a_missing_payload_is_not_retried() -> None:
    store = Flaky(failures=0)
    async with ClaimCheckBus(MemoryBus(partitions=1), store, fetch_retry=FAST) as bus:
        await bus.publisher().publish("h", [OutgoingEvent(BIG, "k")])
        store.clear()
        (event,) = await read_all(bus, "h", 1)
    assert event.body != BIG and store.gets == 1
