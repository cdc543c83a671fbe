"""A token credential of our own: the boundary where Entra ID would hand out tokens.

``FixedTokenCredential`` is an ``azure.core`` ``AsyncTokenCredential`` returning a fixed
token per scope and remembering which scopes were asked for, so tests can run the SDKs'
real credential path (CBS put-token with type ``jwt``; ``Authorization: Bearer``) against
the loopback peer and Azurite without Entra ID. ``unsigned_jwt`` makes a token with the
claims Azurite checks (``iss``, ``aud``, ``iat``/``nbf``/``exp``; it does not verify
signatures in ``--oauth basic`` mode).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken

EVENTHUBS_SCOPE = "https://eventhubs.azure.net//.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(audience: str, *, lifetime_s: int = 3600, **claims: Any) -> str:
    now = int(time.time())
    payload = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT,
               "iat": now - 60, "nbf": now - 60, "exp": now + lifetime_s,
               "oid": "00000000-0000-0000-0000-00000000c0de", **claims}
    header = {"alg": "RS256", "typ": "JWT"}
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()),
                     _b64(b"not-a-signature")])


class FixedTokenCredential:
    """``get_token(scope)`` -> the token configured for that scope; unknown scopes fail."""

    def __init__(self, tokens: Mapping[str, str], lifetime_s: int = 3600) -> None:
        self._tokens = dict(tokens)
        self._lifetime_s = lifetime_s
        self.scopes_requested: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(self, *scopes: str, claims: str | None = None,
                        tenant_id: str | None = None, enable_cae: bool = False,
                        **kwargs: Any) -> AccessToken:
        from azure.core.exceptions import ClientAuthenticationError

        self.scopes_requested.append(scopes)
        for scope in scopes:
            if scope in self._tokens:
                return AccessToken(self._tokens[scope], int(time.time()) + self._lifetime_s)
        raise ClientAuthenticationError(f"no token for scopes {scopes}")

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FixedTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def fixed_credential() -> FixedTokenCredential:
    """Tokens for both services: Event Hubs (any JWT the peer is told to accept) and blob
    storage (claims Azurite accepts)."""
    return FixedTokenCredential({
        EVENTHUBS_SCOPE: unsigned_jwt("https://eventhubs.azure.net"),
        STORAGE_SCOPE: unsigned_jwt("https://storage.azure.com"),
    })
