"""Backends the contract suites run on: memory always; Event Hubs (the real SDK against our
loopback AMQP peer, checkpoints in Azurite) when Node and Azurite are installed."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import Bus
from pipeline.bus.settings import BusSettings

BusFactory = Callable[[], Bus]
CONTRACT_HUBS = {name: 4 for name in ("h", "in", "exec", "out", "dlq")}


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    from tests.eventhubs_peer.azurite import azurite_or_skip

    with azurite_or_skip() as conn_str:
        yield conn_str


# The SDK's transports are sometimes collected unclosed after a link is torn down; those
# warnings are about the SDK's internals, not about what these tests check.
EVENTHUBS_MARKS = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(params=["memory", pytest.param("eventhubs", marks=EVENTHUBS_MARKS)])
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Returns a callable making bus handles onto ONE namespace (so processors can share it)."""
    if request.param == "memory":
        shared = MemoryBus(partitions=4, balance_interval_s=0.05, ownership_expiry_s=0.5)
        yield lambda: shared
        await shared.close()
        return
    from pipeline.bus.eventhubs import EventHubsBus
    from tests.eventhubs_peer import EventHubsPeer

    storage = request.getfixturevalue("azurite")
    async with EventHubsPeer(hubs=CONTRACT_HUBS) as peer:
        settings = BusSettings(
            event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
            storage_connection_string=storage,  # type: ignore[arg-type]
            checkpoint_container=f"cp-{uuid.uuid4().hex[:12]}",
        )
        buses: list[EventHubsBus] = []

        def make() -> Bus:
            bus = EventHubsBus(settings, load_balancing_interval_s=0.3, ownership_expiry_s=2.0,
                               max_wait_s=0.2, greedy=True)
            buses.append(bus)
            return bus

        yield make
        for bus in buses:
            await bus.close()
    gc.collect()  # surface the SDK's stray transports here, under this test's filters
