"""How to reach Event Hubs and blob storage, checked once at start-up.

Two ways each, as the Azure SDKs offer them:

- Event Hubs: ``EVENT_HUB_CONNECTION_STRING`` (shared-access key) or ``EVENT_HUB_NAMESPACE``
  (fully qualified, e.g. ``myns.servicebus.windows.net``) with an Entra ID credential.
- Blob storage (checkpoints, ownership, claim-check payloads): ``STORAGE_CONNECTION_STRING``
  or ``STORAGE_ACCOUNT_URL`` (``https://<account>.blob.core.windows.net``) with the same
  credential.

``UseDevelopmentEmulator=true`` makes the SDK drop TLS, so it is accepted only for a loopback
host (the local emulator); anywhere else it would send the key in plaintext. Every problem
is one :class:`ConfigError` line naming the variable.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from pipeline.bus.settings import BusSettings
from pipeline.errors import ConfigError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def _error(variable: str, message: str) -> ConfigError:
    return ConfigError(f"invalid configuration: {variable}: {message}")


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    host = host.strip().strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_connection_string(conn: str) -> dict[str, str]:
    """Keys as the SDK reads them (case-insensitively); values untouched."""
    return {k.strip().lower(): v.strip()
            for k, _, v in (p.partition("=") for p in conn.split(";") if "=" in p)}


@dataclass(frozen=True)
class EventHubsConfig:
    """A validated way to the namespace and the storage account."""

    #: Fully qualified namespace as the SDK names checkpoint blobs after it (with the
    #: port, for an emulator).
    namespace: str
    #: Shared-access connection string; None: Entra ID on ``namespace``.
    connection_string: str | None
    storage_connection_string: str | None
    storage_account_url: str | None
    checkpoint_container: str

    @property
    def needs_credential(self) -> bool:
        return self.connection_string is None or self.storage_connection_string is None

    @classmethod
    def from_settings(cls, settings: BusSettings) -> EventHubsConfig:
        conn = settings.event_hub_connection_string
        namespace = settings.event_hub_namespace
        if conn is not None and namespace:
            raise _error("EVENT_HUB_NAMESPACE", "set either it (Entra ID auth) or "
                         "EVENT_HUB_CONNECTION_STRING (shared-access key), not both")
        if conn is not None:
            conn_str: str | None = conn.get_secret_value()
            host = _check_connection_string(conn.get_secret_value())
        elif namespace:
            conn_str = None
            host = _check_namespace(namespace)
        else:
            raise _error("EVENT_HUB_CONNECTION_STRING", "required for the Event Hubs backend "
                         "(or EVENT_HUB_NAMESPACE with an Entra ID identity)")

        storage = settings.storage_connection_string
        account_url = settings.storage_account_url
        if storage is not None and account_url:
            raise _error("STORAGE_ACCOUNT_URL", "set either it (Entra ID auth) or "
                         "STORAGE_CONNECTION_STRING (account key), not both")
        if storage is None and not account_url:
            variable = "STORAGE_CONNECTION_STRING" if conn is not None else "STORAGE_ACCOUNT_URL"
            paired = "EVENT_HUB_CONNECTION_STRING" if conn is not None else "EVENT_HUB_NAMESPACE"
            raise _error(variable, f"required with {paired} (checkpoints and partition "
                         "ownership live in blobs)")
        if account_url:
            _check_account_url(account_url)
        return cls(
            namespace=host,
            connection_string=conn_str,
            storage_connection_string=storage.get_secret_value() if storage else None,
            storage_account_url=account_url or None,
            checkpoint_container=settings.checkpoint_container,
        )


def _check_connection_string(conn: str) -> str:
    parts = parse_connection_string(conn)
    endpoint = parts.get("endpoint", "")
    if not endpoint.startswith("sb://"):
        raise _error("EVENT_HUB_CONNECTION_STRING", "expected "
                     "'Endpoint=sb://<namespace>/;SharedAccessKeyName=...;SharedAccessKey=...'")
    netloc = endpoint.removeprefix("sb://").split("/")[0]
    hostname = urlparse(endpoint).hostname or netloc
    if parts.get("usedevelopmentemulator", "").lower() == "true" and not is_loopback(hostname):
        raise _error("EVENT_HUB_CONNECTION_STRING", "UseDevelopmentEmulator=true turns TLS "
                     "off and is accepted only for a loopback host (localhost, 127.0.0.0/8, "
                     f"::1), not {hostname!r}")
    return netloc


def _check_namespace(namespace: str) -> str:
    value = namespace.strip()
    if not (_HOSTNAME.match(value) or is_loopback(value)):
        raise _error("EVENT_HUB_NAMESPACE", "expected the fully qualified namespace, e.g. "
                     f"'mynamespace.servicebus.windows.net' (got {namespace!r})")
    return value


def _check_account_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise _error("STORAGE_ACCOUNT_URL", "expected "
                     "'https://<account>.blob.core.windows.net' (Entra ID tokens travel over "
                     f"HTTPS only; got {url!r})")
