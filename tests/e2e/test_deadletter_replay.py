"""A dead-lettered event can be inspected and, once its cause is fixed, replayed whole."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from consumers.deadletters import read_dead_letters, replay
from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import OutgoingEvent
from pipeline.errors import PermanentError
from pipeline.handling import Emit, EventContext
from pipeline.processor import Processor
from pipeline.settings import ProcessorSettings
from schemas import Event, ExecutionRequest, HubNames

HUBS = HubNames("in", "exec", "out", "dlq")


async def test_replay_republishes_the_raw_body_to_its_source_hub() -> None:
    bus = MemoryBus(partitions=2, balance_interval_s=0.05)
    broken = True
    handled: list[str] = []

    async def handler(event: Event, ctx: EventContext) -> Sequence[Emit]:
        if broken:
            raise PermanentError("downstream misconfigured")
        handled.append(event.request_id)
        return []

    proc = Processor(name="t", bus=bus, hub=HUBS.requests, consumer_group="g", handler=handler,
                     accepts=frozenset({"request"}), deadletter_hub=HUBS.deadletter,
                     settings=ProcessorSettings())
    task = asyncio.create_task(proc.run())
    body = ExecutionRequest(request_id="r-1", code="print(1)").to_json_bytes()
    await bus.publisher().publish(HUBS.requests, [OutgoingEvent(body, "r-1", {"request_id": "r-1"})])

    records = await read_dead_letters(bus, HUBS, idle_s=0.5)
    (record,) = records
    assert record.request_id == "r-1" and record.reason == "downstream misconfigured"
    assert record.body == body and record.source_hub == HUBS.requests

    broken = False  # the cause is fixed
    assert await replay(bus, records, keep=lambda r: r.request_id == "r-1") == 1
    for _ in range(100):
        if handled:
            break
        await asyncio.sleep(0.02)
    await proc.stop(1)
    await task
    assert handled == ["r-1"]
