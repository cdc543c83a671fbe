"""The Azure Event Hubs backend (azure-eventhub + BlobCheckpointStore), loaded only when
configured. The only package that imports ``azure.*``; SDK errors map through ``errors.py``."""

from pipeline.bus.eventhubs.bus import EventHubsBus
from pipeline.bus.eventhubs.clients import AzureClients
from pipeline.bus.eventhubs.config import EventHubsConfig, is_loopback
from pipeline.bus.eventhubs.errors import translate
from pipeline.bus.eventhubs.payloads import BlobPayloadStore
from pipeline.bus.eventhubs.publisher import EventHubsPublisher
from pipeline.bus.eventhubs.subscription import EventHubsSubscription

__all__ = [
    "AzureClients",
    "BlobPayloadStore",
    "EventHubsBus",
    "EventHubsConfig",
    "EventHubsPublisher",
    "EventHubsSubscription",
    "is_loopback",
    "translate",
]
