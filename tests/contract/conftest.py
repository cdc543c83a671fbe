"""Backends the contract suites run on. Memory always; Event Hubs joins when configured."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import Bus

BusFactory = Callable[[], Bus]


@pytest.fixture(params=["memory"])
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Returns a callable making bus handles onto ONE namespace (so processors can share it)."""
    if request.param == "memory":
        shared = MemoryBus(partitions=4, balance_interval_s=0.05, ownership_expiry_s=0.5)
        yield lambda: shared
        await shared.close()
