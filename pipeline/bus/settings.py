"""The bus settings group: which backend, how to reach it, and the hubs on it.

No Event Hubs configuration: the embedded memory bus. Event Hubs is reached either with a
connection string (``EVENT_HUB_CONNECTION_STRING``, shared-access keys) or with Entra ID
(``EVENT_HUB_NAMESPACE``, the fully qualified namespace, and ``DefaultAzureCredential``:
workload identity, managed identity or the Azure CLI). Checkpoints and claim-check payloads
live in blob storage, reached the same two ways (``STORAGE_CONNECTION_STRING`` or
``STORAGE_ACCOUNT_URL``). Which combination is valid is checked when the backend starts
(``pipeline.bus.eventhubs.config``), with one ConfigError line naming the variable.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import HubNames


class BusSettings(BaseSettings):
    """Which bus, and the hubs on it. No Event Hubs configuration: the memory bus."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)
    event_hub_connection_string: SecretStr | None = None
    event_hub_namespace: str | None = Field(
        default=None,
        description="Fully qualified namespace (<name>.servicebus.windows.net) for Entra ID auth.",
    )
    storage_connection_string: SecretStr | None = None
    storage_account_url: str | None = Field(
        default=None,
        description="Blob endpoint (https://<account>.blob.core.windows.net) for Entra ID auth.",
    )
    checkpoint_container: str = "checkpoints"
    hub_requests: str = "requests"
    hub_executions: str = "executions"
    hub_results: str = "results"
    hub_deadletter: str = "deadletter"
    claim_check_container: str = "claim-checks"
    memory_partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    eventhub_load_balancing_interval_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    eventhub_ownership_expiry_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @property
    def hubs(self) -> HubNames:
        return HubNames(self.hub_requests, self.hub_executions, self.hub_results,
                        self.hub_deadletter)

    @property
    def backend(self) -> Literal["memory", "eventhubs"]:
        if self.event_hub_connection_string or self.event_hub_namespace:
            return "eventhubs"
        return "memory"
