"""The one place that reads settings and picks a bus backend."""

from __future__ import annotations

from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import Bus
from pipeline.errors import ConfigError
from pipeline.settings import BusSettings


def build_bus(settings: BusSettings) -> Bus:
    if settings.backend == "memory":
        return MemoryBus(partitions=settings.memory_partitions)
    raise ConfigError(
        "invalid configuration: EVENT_HUB_CONNECTION_STRING: the Event Hubs backend is not "
        "part of this build yet; unset it to use the embedded memory bus"
    )
