"""The one place that reads settings and picks a bus backend."""

from __future__ import annotations

from pipeline.bus.claimcheck import ClaimCheckBus
from pipeline.bus.memory import MemoryBus, MemoryPayloadStore
from pipeline.bus.settings import BusSettings


def build_bus(settings: BusSettings) -> ClaimCheckBus:
    """Memory bus without Event Hubs configuration, Event Hubs with it; both with claim
    check, so events over the 1 MB limit travel as blobs. Bad configuration raises one
    ConfigError line naming the variable. Use as ``async with build_bus(settings) as bus:``
    (or close it)."""
    if settings.backend == "memory":
        return ClaimCheckBus(MemoryBus(partitions=settings.memory_partitions),
                             MemoryPayloadStore())
    # The Azure SDKs load only when this backend is used.
    from pipeline.bus.eventhubs import BlobPayloadStore, EventHubsBus

    bus = EventHubsBus(
        settings,
        load_balancing_interval_s=settings.eventhub_load_balancing_interval_s,
        ownership_expiry_s=settings.eventhub_ownership_expiry_s,
    )
    return ClaimCheckBus(bus, BlobPayloadStore(bus.clients, settings.claim_check_container))
