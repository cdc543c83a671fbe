"""The one table from Azure SDK exceptions to the pipeline's error tree.

Every call into azure-eventhub, azure-storage-blob or azure-identity in this package goes
through :func:`translate`; nothing else inspects SDK exceptions. Rows are tried in order,
the first whose type (and status, where given) matches wins, so subclasses come first:

    SDK exception                                   ours
    azure.identity CredentialUnavailableError       PermanentError  (no Entra ID credential here)
    azure.core ClientAuthenticationError            PermanentError  (credentials refused)
    azure.eventhub AuthenticationError              PermanentError  (credentials refused)
    azure.core HttpResponseError 401/403            PermanentError  (not authorised: RBAC role)
    azure.core ResourceNotFoundError                ``missing`` if the caller names one
                                                    (PayloadMissingError), else transient
    azure.eventhub ClientClosedError                BusUnavailableError (client closed)
    azure.eventhub EventHubError, ConnectError, ... BusUnavailableError
    azure.core AzureError, OSError, TimeoutError    BusUnavailableError

Our own errors pass through unchanged; anything else is returned as is (a bug, not an outage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.eventhub.exceptions import AuthenticationError, ClientClosedError, EventHubError
from azure.identity import CredentialUnavailableError

from pipeline.errors import BusUnavailableError, PermanentError, PipelineError

#: SDK-level retries per call; the processor retries around us (tenacity), so keep them few.
SDK_RETRY_TOTAL = 1

Make = Callable[[BaseException, str, str], Exception]


@dataclass(frozen=True)
class Row:
    types: tuple[type[BaseException], ...]
    make: Make
    statuses: frozenset[int] = frozenset()

    def matches(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.types):
            return False
        return not self.statuses or getattr(exc, "status_code", None) in self.statuses


def _no_credential(exc: BaseException, service: str, doing: str) -> Exception:
    return PermanentError(f"no Entra ID credential available for {service} while {doing} "
                          f"(workload identity, managed identity, Azure CLI): {exc}")


def _refused(exc: BaseException, service: str, doing: str) -> Exception:
    return PermanentError(f"{service} refused our credentials while {doing}: {exc}")


def _forbidden(exc: BaseException, service: str, doing: str) -> Exception:
    return PermanentError(f"{service} did not authorise {doing} (check the identity's role "
                          f"assignment): {exc}")


def _closed(exc: BaseException, service: str, doing: str) -> Exception:
    return BusUnavailableError(f"{service} client closed while {doing}")


def _unavailable(exc: BaseException, service: str, doing: str) -> Exception:
    return BusUnavailableError(f"{service} unavailable while {doing}: {exc}")


TABLE: tuple[Row, ...] = (
    Row((CredentialUnavailableError,), _no_credential),
    Row((ClientAuthenticationError, AuthenticationError), _refused),
    Row((HttpResponseError,), _forbidden, frozenset({401, 403})),
    Row((ClientClosedError,), _closed),
    Row((EventHubError, AzureError, OSError, TimeoutError), _unavailable),
)


def translate(exc: BaseException, doing: str, *, service: str = "Event Hubs",
              missing: Callable[[str], PermanentError] | None = None) -> Exception:
    """Our error for an SDK error raised while ``doing`` something with ``service``.

    ``missing`` makes a not-found answer permanent with the caller's own type (a claim-check
    payload that is gone); without it a not-found resource is treated as an outage.
    """
    if isinstance(exc, PipelineError):
        return exc
    if missing is not None and isinstance(exc, ResourceNotFoundError):
        return missing(f"{service}: nothing found while {doing}")
    for row in TABLE:
        if row.matches(exc):
            return row.make(exc, service, doing)
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


__all__ = ["SDK_RETRY_TOTAL", "TABLE", "translate"]
