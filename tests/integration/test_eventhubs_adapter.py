"""Our Event Hubs adapter under faults: connection loss, an unreachable namespace, bad
configuration. The real SDK against the loopback peer and Azurite."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from pipeline.bus.eventhubs import EventHubsBus
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import OutgoingEvent
from pipeline.bus.settings import BusSettings
from pipeline.errors import BusUnavailableError, ConfigError, EventTooLargeError
from pipeline.handling import Emit, EventContext
from pipeline.processor import Processor
from pipeline.settings import ProcessorSettings
from schemas import Event, ExecutionRequest
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


@pytest.fixture
async def peer() -> AsyncIterator[EventHubsPeer]:
    async with EventHubsPeer(hubs={"in": 2, "dlq": 2}) as running:
        yield running
    gc.collect()


def settings(peer: EventHubsPeer, storage: str) -> BusSettings:
    return BusSettings(event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
                       storage_connection_string=storage,  # type: ignore[arg-type]
                       checkpoint_container=f"cp-{uuid.uuid4().hex[:10]}")


def request(i: int) -> OutgoingEvent:
    return OutgoingEvent(ExecutionRequest(request_id=f"r{i}", code="print(1)").to_json_bytes(),
                         partition_key=f"r{i}")


async def test_processing_survives_dropped_connections(peer: EventHubsPeer, azurite: str) -> None:
    bus = EventHubsBus(settings(peer, azurite), load_balancing_interval_s=0.3, greedy=True)
    handled: set[str] = set()

    async def handler(event: Event, ctx: EventContext) -> Sequence[Emit]:
        handled.add(event.request_id)
        return []

    proc = Processor(name="t", bus=bus, hub="in", consumer_group="g", handler=handler,
                     accepts=frozenset({"request"}), deadletter_hub="dlq",
                     settings=ProcessorSettings(retry_backoff_s=0.05))
    task = asyncio.create_task(proc.run())
    publisher = bus.publisher()
    await publisher.publish("in", [request(i) for i in range(10)])
    for _ in range(300):
        if len(handled) == 10:
            break
        await asyncio.sleep(0.05)
    assert await peer.drop_connections() > 0
    # The publisher reconnects (or fails transiently, which the caller retries).
    for attempt in range(20):
        try:
            await publisher.publish("in", [request(i) for i in range(10, 20)])
            break
        except BusUnavailableError:
            await asyncio.sleep(0.2 * (attempt + 1))
    for _ in range(600):
        if len(handled) == 20:
            break
        await asyncio.sleep(0.05)
    await proc.stop(2)
    await task
    await bus.close()
    assert handled == {f"r{i}" for i in range(20)}


async def test_unreachable_namespace_is_a_transient_error(azurite: str) -> None:
    dead = "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
    bus = EventHubsBus(BusSettings(event_hub_connection_string=dead,  # type: ignore[arg-type]
                                   storage_connection_string=azurite))  # type: ignore[arg-type]
    with pytest.raises(BusUnavailableError, match="Event Hubs unavailable while publishing"):
        await bus.publisher().publish("in", [request(0)])
    await bus.close()


async def test_single_event_over_the_limit_is_permanent(peer: EventHubsPeer, azurite: str) -> None:
    bus = EventHubsBus(settings(peer, azurite))
    with pytest.raises(EventTooLargeError):
        await bus.publisher().publish("in", [OutgoingEvent(b"x" * (1024 * 1024 + 10), "k")])
    await bus.close()


def test_bad_eventhubs_configuration_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="STORAGE_CONNECTION_STRING"):
        build_bus(BusSettings(event_hub_connection_string="Endpoint=sb://x/;a=b"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="EVENT_HUB_CONNECTION_STRING"):
        build_bus(BusSettings(event_hub_connection_string="nonsense",  # type: ignore[arg-type]
                              storage_connection_string="UseDevelopmentStorage=true"))  # type: ignore[arg-type]
