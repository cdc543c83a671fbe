"""The one place that reads settings and picks a bus backend."""

from __future__ import annotations

from pipeline.bus.claimcheck import ClaimCheckBus, MemoryPayloadStore
from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import Bus
from pipeline.settings import BusSettings


def build_bus(settings: BusSettings) -> Bus:
    """Memory bus without an Event Hub connection string, Event Hubs with one; both with
    claim check, so events over the 1 MB limit travel as blobs."""
    if settings.backend == "memory":
        return ClaimCheckBus(MemoryBus(partitions=settings.memory_partitions),
                             MemoryPayloadStore())
    # The Azure SDKs load only when this backend is used.
    from pipeline.bus.eventhubs import EventHubsBus
    from pipeline.bus.eventhubs_claims import BlobPayloadStore

    bus = EventHubsBus(
        settings,
        load_balancing_interval_s=settings.eventhub_load_balancing_interval_s,
        ownership_expiry_s=settings.eventhub_ownership_expiry_s,
    )
    assert settings.storage_connection_string is not None  # EventHubsBus checked it
    store = BlobPayloadStore(settings.storage_connection_string.get_secret_value(),
                             settings.claim_check_container)
    return ClaimCheckBus(bus, store)
