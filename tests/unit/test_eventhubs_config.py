"""Start-up checks of the Event Hubs backend's configuration, the SDK-error table, and the
bus as an async context manager. No network: constructing clients does not connect."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.eventhub.exceptions import AuthenticationError, ClientClosedError, ConnectError
from azure.identity import CredentialUnavailableError

from pipeline.bus.eventhubs import EventHubsBus, EventHubsConfig, is_loopback, translate
from pipeline.bus.factory import build_bus
from pipeline.bus.settings import BusSettings
from pipeline.errors import (
    BusUnavailableError,
    ConfigError,
    PayloadMissingError,
    PermanentError,
)

BLOB = "UseDevelopmentStorage=true"


def conn(host: str, emulator: bool = True) -> str:
    flag = ";UseDevelopmentEmulator=true" if emulator else ""
    return f"Endpoint=sb://{host}/;SharedAccessKeyName=k;SharedAccessKey=v{flag}"


def config(**values: str) -> EventHubsConfig:
    return EventHubsConfig.from_settings(BusSettings(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:5672", "127.8.9.10", "[::1]:5672",
                                  "LOCALHOST"])
def test_the_emulator_flag_is_accepted_on_loopback(host: str) -> None:
    cfg = config(event_hub_connection_string=conn(host), storage_connection_string=BLOB)
    assert cfg.connection_string is not None and not cfg.needs_credential


@pytest.mark.parametrize("host", ["myns.servicebus.windows.net", "10.0.0.4:5672",
                                  "localhost.evil.example", "128.0.0.1", "[::2]"])
def test_the_emulator_flag_is_refused_anywhere_else(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(event_hub_connection_string=conn(host), storage_connection_string=BLOB)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: EVENT_HUB_CONNECTION_STRING:")
    assert "UseDevelopmentEmulator=true" in message and "loopback" in message


def test_a_real_namespace_without_the_flag_is_fine() -> None:
    cfg = config(event_hub_connection_string=conn("myns.servicebus.windows.net", emulator=False),
                 storage_connection_string=BLOB)
    assert cfg.namespace == "myns.servicebus.windows.net"


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["localhost", "127.0.0.1", "127.255.0.1", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["10.0.0.1", "example.com", "::2", "localhost.com"]))


def test_entra_id_configuration() -> None:
    cfg = config(event_hub_namespace="myns.servicebus.windows.net",
                 storage_account_url="https://acct.blob.core.windows.net")
    assert cfg.connection_string is None and cfg.needs_credential
    assert cfg.namespace == "myns.servicebus.windows.net"


@pytest.mark.parametrize(("values", "variable"), [
    ({"event_hub_namespace": "myns.servicebus.windows.net"}, "STORAGE_ACCOUNT_URL"),
    ({"event_hub_namespace": "sb://myns.servicebus.windows.net/",
      "storage_account_url": "https://a.blob.core.windows.net"}, "EVENT_HUB_NAMESPACE"),
    ({"event_hub_namespace": "myns",
      "storage_account_url": "https://a.blob.core.windows.net"}, "EVENT_HUB_NAMESPACE"),
    ({"event_hub_namespace": "myns.servicebus.windows.net",
      "storage_account_url": "http://a.blob.core.windows.net"}, "STORAGE_ACCOUNT_URL"),
    ({"event_hub_namespace": "myns.servicebus.windows.net",
      "event_hub_connection_string": "Endpoint=sb://x/;a=b",
      "storage_account_url": "https://a.blob.core.windows.net"}, "EVENT_HUB_NAMESPACE"),
    ({"event_hub_namespace": "myns.servicebus.windows.net", "storage_connection_string": BLOB,
      "storage_account_url": "https://a.blob.core.windows.net"}, "STORAGE_ACCOUNT_URL"),
    ({"event_hub_connection_string": "Endpoint=sb://x/;a=b"}, "STORAGE_CONNECTION_STRING"),
])
def test_bad_configuration_is_one_line_naming_the_variable(values: dict[str, str],
                                                          variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_bus(BusSettings(**values))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid configuration: {variable}:")


def test_settings_read_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_HUB_NAMESPACE", "myns.servicebus.windows.net")
    monkeypatch.setenv("STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    settings = BusSettings()
    assert settings.backend == "eventhubs"
    assert settings.storage_account_url == "https://acct.blob.core.windows.net"


async def test_entra_bus_starts_and_closes_without_a_network() -> None:
    settings = BusSettings(event_hub_namespace="myns.servicebus.windows.net",
                           storage_account_url="https://acct.blob.core.windows.net")
    async with build_bus(settings) as bus:  # DefaultAzureCredential, made and closed
        assert bus.connected()
    async with EventHubsBus(settings) as direct:
        assert direct.connected()
    assert not direct.connected()


async def test_memory_bus_is_an_async_context_manager() -> None:
    async with build_bus(BusSettings()) as bus:
        assert bus.connected()
        async with bus.publisher() as publisher:
            await publisher.publish("h", [])
    assert not bus.connected()


@pytest.mark.parametrize(("sdk_error", "ours", "text"), [
    (CredentialUnavailableError("no identity"), PermanentError, "no Entra ID credential"),
    (ClientAuthenticationError("bad token"), PermanentError, "refused our credentials"),
    (AuthenticationError("cbs 401"), PermanentError, "refused our credentials"),
    (ClientClosedError("closed"), BusUnavailableError, "client closed"),
    (ConnectError("refused"), BusUnavailableError, "unavailable while"),
    (ServiceRequestError("dns"), BusUnavailableError, "unavailable while"),
    (ConnectionResetError("reset"), BusUnavailableError, "unavailable while"),
    (TimeoutError(), BusUnavailableError, "unavailable while"),
    (ResourceNotFoundError("gone"), BusUnavailableError, "unavailable while"),
])
def test_the_sdk_error_table(sdk_error: Exception, ours: type[Exception], text: str) -> None:
    mapped = translate(sdk_error, "doing it")
    assert type(mapped) is ours and text in str(mapped)


def test_forbidden_is_permanent_and_missing_payloads_are_ours() -> None:
    forbidden = HttpResponseError("AuthorizationPermissionMismatch")
    forbidden.status_code = 403
    assert type(translate(forbidden, "x", service="Blob storage")) is PermanentError
    missing = translate(ResourceNotFoundError("gone"), "fetching", missing=PayloadMissingError)
    assert isinstance(missing, PayloadMissingError)
    bug = ValueError("ours")
    assert translate(bug, "x") is bug
