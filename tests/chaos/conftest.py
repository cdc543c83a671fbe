"""Backends the chaos suite breaks: the memory bus (faults through its constructor: a store
and a publisher that refuse or hang like the real ones) and Event Hubs (the real SDK against
the loopback peer's fault switches, checkpoints in Azurite behind a proxy that can take the
store down).

The outage length is ``CHAOS_OUTAGE_S`` (default 5 s): longer than every in-process retry
horizon of the processor under test (so refused outputs really are kept and re-published)
and than the ownership expiry is *not* (a store outage shorter than the expiry must not
cost a partition). The issue's 30 s is ``CHAOS_OUTAGE_S=30``; it exercises nothing more, at
six times the cost, on a CI machine shared with everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.bus.memory import MemoryBus, MemoryCheckpointStore, MemoryPublisher
from pipeline.bus.ports import Bus, Checkpoint, OutgoingEvent, Ownership
from pipeline.bus.settings import BusSettings
from pipeline.errors import BusUnavailableError

OUTAGE_S = float(os.environ.get("CHAOS_OUTAGE_S", "5"))
OWNERSHIP_EXPIRY_S = max(10.0, OUTAGE_S * 2)
CHAOS_HUBS = {name: 4 for name in ("in", "exec", "out", "dlq")}

pytestmark = pytest.mark.chaos


@dataclass
class MemoryFaults:
    """The switches for the memory bus: refused or hanging publishes, an unreachable store."""

    frozen: asyncio.Event = field(default_factory=asyncio.Event)  # set = thawed
    refusing: bool = False
    store_is_down: bool = False
    refused: int = 0

    def __post_init__(self) -> None:
        self.frozen.set()


class FaultyStore(MemoryCheckpointStore):
    def __init__(self, faults: MemoryFaults) -> None:
        super().__init__()
        self._faults = faults

    def _check(self) -> None:
        if self._faults.store_is_down:
            raise BusUnavailableError("checkpoint store unreachable (chaos)")

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        self._check()
        return await super().list_ownership(hub, consumer_group)

    async def claim_ownership(self, claims: Sequence[Ownership]) -> list[Ownership]:
        self._check()
        return await super().claim_ownership(claims)

    async def update_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._check()
        await super().update_checkpoint(checkpoint)

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        self._check()
        return await super().list_checkpoints(hub, consumer_group)

    async def stored_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        """What the store holds, outage or not (for the test's own bookkeeping)."""
        return await super().list_checkpoints(hub, consumer_group)


class FaultyPublisher(MemoryPublisher):
    def __init__(self, bus: MemoryBus, faults: MemoryFaults) -> None:
        super().__init__(bus)
        self._faults = faults

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        await self._faults.frozen.wait()  # a hung broker: the call just does not return
        if self._faults.refusing:
            self._faults.refused += 1
            raise BusUnavailableError("server busy (chaos)")
        await super().publish(hub, events)


class FaultyMemoryBus(MemoryBus):
    def __init__(self, faults: MemoryFaults, ownership_expiry_s: float = OWNERSHIP_EXPIRY_S) -> None:
        super().__init__(partitions=4, store=FaultyStore(faults), balance_interval_s=0.05,
                         ownership_expiry_s=ownership_expiry_s)
        self.faults = faults

    def publisher(self) -> MemoryPublisher:
        return FaultyPublisher(self, self.faults)


class Chaos:
    """One backend and the faults it can suffer, behind the same switches."""

    def __init__(self, backend: str, bus_factory: Any, *, peer: Any = None, proxy: Any = None,
                 memory: MemoryFaults | None = None, direct: Bus | None = None) -> None:
        self.backend = backend
        self.make_bus = bus_factory
        self._peer = peer
        self._proxy = proxy
        self._memory = memory
        self._direct = direct  # the same namespace, its store NOT behind the proxy

    async def freeze(self) -> None:
        if self._memory is not None:
            self._memory.frozen.clear()
        else:
            self._peer.faults.freeze()

    async def thaw(self) -> None:
        if self._memory is not None:
            self._memory.frozen.set()
        else:
            self._peer.faults.thaw()

    async def refuse_sends(self, refuse: bool) -> None:
        if self._memory is not None:
            self._memory.refusing = refuse
        elif refuse:
            self._peer.faults.refuse_sends()
        else:
            self._peer.faults.accept_sends()

    def refused(self) -> int:
        return self._memory.refused if self._memory is not None else self._peer.faults.refused

    async def drop_links(self) -> None:
        if self._memory is not None:
            pytest.skip("the memory bus has no links to drop")
        await self._peer.force_detach()
        await self._peer.drop_connections()

    async def store(self, up: bool) -> None:
        if self._memory is not None:
            self._memory.store_is_down = not up
        elif up:
            self._proxy.up()
        else:
            self._proxy.down()

    async def stored_checkpoints(self, bus: Bus, hub: str, group: str) -> dict[str, int]:
        """The group's checkpoints as stored, read past any outage of our own making."""
        if self._memory is not None:
            cps = await bus.store.stored_checkpoints(hub, group)  # type: ignore[attr-defined]
        else:
            assert self._direct is not None
            cps = await self._direct.list_checkpoints(hub, group)
        return {c.partition_id: c.sequence_number for c in cps}


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    from tests.eventhubs_peer.azurite import azurite_or_skip

    with azurite_or_skip() as conn_str:
        yield conn_str


EVENTHUBS_MARKS = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@contextlib.asynccontextmanager
async def backend(request: pytest.FixtureRequest, memory_expiry_s: float,
                  eventhubs_expiry_s: float) -> AsyncIterator[Chaos]:
    """The fixture's backend (``request.param``) with its fault switches, torn down whole."""
    if request.param == "memory":
        faults = MemoryFaults()
        memory_bus = FaultyMemoryBus(faults, ownership_expiry_s=memory_expiry_s)
        yield Chaos("memory", lambda: memory_bus, memory=faults)
        faults.frozen.set()
        faults.store_is_down = False
        await memory_bus.close()
        return
    from pipeline.bus.eventhubs import EventHubsBus
    from tests.chaos.blobproxy import BlobProxy
    from tests.eventhubs_peer import EventHubsPeer

    storage = request.getfixturevalue("azurite")
    async with EventHubsPeer(hubs=CHAOS_HUBS) as peer, BlobProxy(storage) as proxy:
        settings = BusSettings(
            event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
            storage_connection_string=proxy.connection_string,  # type: ignore[arg-type]
            checkpoint_container=f"cp-{uuid.uuid4().hex[:12]}",
        )
        buses: list[EventHubsBus] = []

        def make() -> Bus:
            if not buses:
                buses.append(EventHubsBus(settings, load_balancing_interval_s=0.3,
                                          ownership_expiry_s=eventhubs_expiry_s, max_wait_s=0.2,
                                          greedy=True))
            return buses[0]

        direct = EventHubsBus(settings.model_copy(
            update={"storage_connection_string": SecretStr(storage)}))
        yield Chaos("eventhubs", make, peer=peer, proxy=proxy, direct=direct)
        await direct.close()
        peer.faults.thaw()
        peer.faults.accept_sends()
        proxy.up()
        for bus in buses:
            await bus.close()
    gc.collect()


@pytest.fixture(params=["memory", pytest.param("eventhubs", marks=EVENTHUBS_MARKS)])
async def chaos(request: pytest.FixtureRequest) -> AsyncIterator[Chaos]:
    async with backend(request, OWNERSHIP_EXPIRY_S, OWNERSHIP_EXPIRY_S) as made:
        yield made


#: A replica that cannot renew its ownership for this long gives its partitions up.
SHORT_EXPIRY_S = 3.0


@pytest.fixture(params=["memory", pytest.param("eventhubs", marks=EVENTHUBS_MARKS)])
async def short_expiry(request: pytest.FixtureRequest) -> AsyncIterator[Chaos]:
    """Like ``chaos``, with an ownership expiry shorter than the store outage to come."""
    async with backend(request, 1.0, SHORT_EXPIRY_S) as made:
        yield made
