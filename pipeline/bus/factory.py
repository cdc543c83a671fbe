"""The one place that reads settings and picks a bus backend."""

from __future__ import annotations

from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import Bus
from pipeline.settings import BusSettings


def build_bus(settings: BusSettings) -> Bus:
    if settings.backend == "memory":
        return MemoryBus(partitions=settings.memory_partitions)
    from pipeline.bus.eventhubs import EventHubsBus  # the Azure SDKs load only when used

    return EventHubsBus(settings)
