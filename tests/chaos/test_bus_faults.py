"""The processor through broker and checkpoint-store faults, on the memory bus and on Event
Hubs (loopback peer + Azurite behind a proxy). After each fault: every request has exactly
one result after dedupe; an event handled again was never covered by a checkpoint (the
unfinished window: the SDK re-opens a partition from its checkpoint after a dropped link);
the checkpoints reach the last event of every partition without a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import pytest

from consumers.dedupe import Deduplicator
from pipeline.bus.ports import Bus
from pipeline.errors import BusUnavailableError
from pipeline.handling import Emit, EventContext
from pipeline.processor import Processor
from schemas import Event, ExecutionRequest, ExecutionResult
from tests.chaos.conftest import OUTAGE_S, Chaos
from tests.contract.test_processor_contract import (
    HUBS,
    HubReader,
    eventually,
    publish_requests,
    settings,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

N = 60


class CountingHandler:
    """Echoes each request as a result; counts executions, remembers the last sequence
    number it saw on each partition, and checks every repeated execution against the
    stored checkpoint: a repeat of an event a checkpoint already covered is a violation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.last_seq: dict[str, int] = {}
        self.violations: list[str] = []
        self.stored: Callable[[], Awaitable[dict[str, int]]] | None = None
        #: The last checkpoints read; while the store is down nothing can move them.
        self.known: dict[str, int] = {}
        #: False: compare with ``known`` as the test set it, without reading the store again.
        self.refresh_known = True

    async def __call__(self, event: Event, ctx: EventContext) -> Sequence[Emit]:
        assert isinstance(event, ExecutionRequest)
        self.calls[event.request_id] += 1
        if self.calls[event.request_id] > 1 and self.stored is not None and self.refresh_known:
            # The store down (our doing) still holds what self.known holds.
            with contextlib.suppress(BusUnavailableError):
                self.known = await self.stored()
        if self.calls[event.request_id] > 1:
            covered = self.known.get(ctx.partition_id, -1)
            if ctx.sequence_number <= covered:
                self.violations.append(f"{event.request_id}@{ctx.partition_id}/"
                                       f"{ctx.sequence_number} <= checkpoint {covered}")
        self.last_seq[ctx.partition_id] = max(self.last_seq.get(ctx.partition_id, -1),
                                              ctx.sequence_number)
        await asyncio.sleep(0.02)
        return [Emit(HUBS.results, ExecutionResult(request_id=event.request_id, attempt=1,
                                                   status="succeeded"))]  # type: ignore[arg-type]


class Run:
    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.bus: Bus = chaos.make_bus()
        self.handler = CountingHandler()
        self.ids = [f"c{i}" for i in range(N)]
        self.processor = Processor(
            name="chaos", bus=self.bus, hub=HUBS.requests, consumer_group="workers",
            handler=self.handler, accepts=frozenset({"request"}),  # type: ignore[arg-type]
            deadletter_hub=HUBS.deadletter, owner_id="chaos",
            settings=settings(transient_retries=1, max_concurrency=4, retry_backoff_s=0.05,
                              retry_backoff_max_s=0.5, checkpoint_interval_s=0.2,
                              checkpoint_timeout_s=2.0, stuck_after_s=3600))
        self.results = HubReader(self.bus, HUBS.results)
        self.handler.stored = lambda: chaos.stored_checkpoints(self.bus, HUBS.requests, "workers")

    async def start(self) -> None:
        self.task = asyncio.create_task(self.processor.run())
        await eventually(lambda: len(self.processor.owned_partitions()) == 4
                         and len(self.results._sub.owned_partitions()) == 4,
                         timeout=30, what="processor and reader own every partition")
        await publish_requests(self.bus, self.ids)
        await eventually(lambda: len(self.handler.calls) >= N // 4, timeout=30, what="mid-stream")

    def answered(self) -> set[str]:
        return {e.properties.get("request_id", "") for e in self.results.events}

    async def finish(self) -> None:
        await eventually(lambda: self.answered() >= set(self.ids), timeout=90,
                         what="every request answered")
        dedupe = Deduplicator()
        unique = [r for r in self.results.decoded()
                  if dedupe.first_time(r.dedupe_key)]  # type: ignore[union-attr]
        assert sorted(r.request_id for r in unique) == sorted(self.ids)  # type: ignore[union-attr]
        assert self.handler.violations == [], "executed again outside the unfinished window"
        self.repeats = sum(c - 1 for c in self.handler.calls.values())
        await self.checkpoints_reach_the_end()
        assert self.processor.stuck() == []
        await self.processor.stop()
        await self.task
        await self.results.close()

    async def checkpoints_reach_the_end(self) -> None:
        last = dict(self.handler.last_seq)
        for _ in range(1500):
            stored = await self.chaos.stored_checkpoints(self.bus, HUBS.requests, "workers")
            if stored == last:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"checkpoints {stored} never reached {last}")


async def outage(on: Callable[[], Awaitable[None]], off: Callable[[], Awaitable[None]]) -> None:
    await on()
    await asyncio.sleep(OUTAGE_S)  # the outage lasts this long: a duration, not a condition
    await off()


async def test_broker_frozen_mid_stream(chaos: Chaos) -> None:
    run = Run(chaos)
    await run.start()
    await outage(chaos.freeze, chaos.thaw)
    await run.finish()
    assert run.repeats == 0  # a frozen broker drops nothing: nothing is delivered twice


async def test_broker_refuses_sends_mid_stream(chaos: Chaos) -> None:
    run = Run(chaos)
    await run.start()
    await chaos.refuse_sends(True)
    await eventually(lambda: chaos.refused() >= 3, timeout=30, what="sends refused")
    await eventually(lambda: bool(run.processor._budget.used), timeout=30, what="outputs kept")
    await asyncio.sleep(OUTAGE_S)
    await chaos.refuse_sends(False)
    await run.finish()
    assert run.repeats == 0  # refused outputs were kept and re-sent, never recomputed


async def test_broker_links_dropped_mid_stream(chaos: Chaos) -> None:
    run = Run(chaos)
    await run.start()
    # The SDK re-opens a partition from the checkpoint it reads when it claims it again; a
    # checkpoint write already on its way when the link dropped can land after that read.
    # So the unfinished window of each drop starts at the checkpoints stored before it.
    run.handler.refresh_known = False
    for _ in range(3):
        run.handler.known = await chaos.stored_checkpoints(run.bus, HUBS.requests, "workers")
        await chaos.drop_links()
        await asyncio.sleep(0.3)
    await run.finish()


async def test_checkpoint_store_down_mid_stream(chaos: Chaos) -> None:
    run = Run(chaos)
    await run.start()
    before = await chaos.stored_checkpoints(run.bus, HUBS.requests, "workers")
    run.handler.known = before
    await chaos.store(up=False)
    # Processing goes on while the store is unreachable: every request is answered...
    await eventually(lambda: run.answered() >= set(run.ids), timeout=90,
                     what="every request answered while the store is down")
    assert await chaos.stored_checkpoints(run.bus, HUBS.requests, "workers") == before
    assert run.processor.owned_partitions() == frozenset({"0", "1", "2", "3"})
    await chaos.store(up=True)
    # ...and the checkpoints catch up once it is back, without a restart.
    await run.finish()
    assert run.repeats == 0  # a store outage shorter than the ownership expiry costs nothing


async def test_a_replica_that_cannot_renew_ownership_releases_its_partitions(
        short_expiry: Chaos) -> None:
    # On Event Hubs the SDK alone would keep them (its blob store reports a claim that
    # raised as kept); pipeline.bus.eventhubs.ownership gives them up after the expiry.
    chaos = short_expiry
    run = Run(chaos)
    await run.start()
    before = await chaos.stored_checkpoints(run.bus, HUBS.requests, "workers")
    run.handler.known = before
    await chaos.store(up=False)
    await eventually(lambda: run.processor.owned_partitions() == frozenset(), timeout=30,
                     what="partitions released after the ownership expiry")
    assert run.processor.stuck() == []  # released partitions are nobody's stuck partitions
    await chaos.store(up=True)
    await eventually(lambda: len(run.processor.owned_partitions()) == 4, timeout=30,
                     what="partitions claimed again")
    await run.finish()
