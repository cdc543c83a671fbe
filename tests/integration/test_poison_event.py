"""A poison event on a partition, on Event Hubs (the real SDK, the loopback peer, blob
checkpoints in Azurite): it is dead-lettered with its body, the events behind it are
handled, and the partition's checkpoint reaches its last event within one checkpoint
interval of that event ending."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.bus.eventhubs import EventHubsBus
from pipeline.bus.ports import OutgoingEvent
from pipeline.bus.settings import BusSettings
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from schemas import DeadLetter, ExecutionRequest, decode_event
from tests.contract.test_processor_contract import HUBS, HubReader, ScriptedHandler, settings
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

INTERVAL_S = 1.0
#: Azurite's write and our polling of it; far below the interval being checked.
SLACK_S = 0.4


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


@pytest.fixture
async def bus(azurite: str) -> AsyncIterator[EventHubsBus]:
    async with EventHubsPeer(hubs={h: 2 for h in HUBS.all()}) as peer:
        bus = EventHubsBus(
            BusSettings(event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
                        storage_connection_string=azurite,  # type: ignore[arg-type]
                        checkpoint_container=f"cp-{uuid.uuid4().hex[:12]}"),
            load_balancing_interval_s=0.3, ownership_expiry_s=2.0, max_wait_s=0.2, greedy=True)
        yield bus
        await bus.close()
    gc.collect()


async def test_poison_event_is_dead_lettered_and_the_checkpoint_reaches_the_end(
    bus: EventHubsBus,
) -> None:
    poison = b'{"code": "print(1)", "inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    good = [ExecutionRequest(request_id=f"g{i}", code="print(1)").to_json_bytes() for i in range(10)]
    bodies = [*good[:5], poison, *good[5:]]
    dlq = HubReader(bus, HUBS.deadletter)
    handler = ScriptedHandler()
    metrics = PipelineMetrics()
    proc = Processor(name="poison", bus=bus, hub=HUBS.requests, consumer_group="workers",
                     handler=handler, accepts=frozenset({"request"}),  # type: ignore[arg-type]
                     deadletter_hub=HUBS.deadletter, metrics=metrics, owner_id="p1",
                     settings=settings(checkpoint_interval_s=INTERVAL_S, checkpoint_every=10_000))
    task = asyncio.create_task(proc.run())

    def ended() -> float:
        sample = metrics.registry.get_sample_value
        return sum(sample("llmexec_events_processed_total",
                          {"worker": "poison", "hub": HUBS.requests, "outcome": o}) or 0
                   for o in ("ok", "deadlettered"))

    await bus.publisher().publish(HUBS.requests,
                                  [OutgoingEvent(b, partition_key="one") for b in bodies])
    deadline = time.monotonic() + 30
    while ended() < len(bodies):
        assert time.monotonic() < deadline, f"only {ended()} of {len(bodies)} events ended"
        await asyncio.sleep(0.01)
    last_ended = time.monotonic()
    while True:
        cps = {c.partition_id: c.sequence_number
               for c in await bus.list_checkpoints(HUBS.requests, "workers")}
        if len(bodies) - 1 in cps.values():
            break
        assert time.monotonic() - last_ended < INTERVAL_S + SLACK_S + 5, cps
        await asyncio.sleep(0.05)
    took = time.monotonic() - last_ended
    assert took <= INTERVAL_S + SLACK_S, f"checkpoint took {took:.2f}s after the last event ended"

    await dlq.wait_for(1)
    (record,) = dlq.decoded()
    assert isinstance(record, DeadLetter) and "nest" in record.reason
    assert record.body == poison and record.sequence_number == 5
    assert sorted(handler.finished) == sorted(f"g{i}" for i in range(10))
    assert proc.stuck() == []
    await proc.stop()
    await task
    await dlq.close()
    assert all(decode_event(e.body).kind == "deadletter" for e in dlq.events)
