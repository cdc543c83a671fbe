"""Ownership that is not renewed is not kept.

The SDK's ``BlobCheckpointStore.claim_ownership`` returns a claim that *raised* (storage
unreachable, a timeout) as if it had succeeded: "keep the ownership if an unexpected error
happens". A replica cut off from the store would then go on processing its partitions
after its ownership expired and another replica, which can reach the store, took them over:
two consumers on one partition, work done twice outside the unfinished window.

:class:`RenewalCheckedStore` wraps the store the SDK's load balancer uses. A renewal that
succeeded carries a new etag; one that failed comes back with the etag it was sent with.
Once a partition has gone unrenewed for longer than the ownership expiry, it is left out of
the claimed list, so the SDK closes that partition (``OWNERSHIP_LOST``: our processor
abandons it without a checkpoint, as for any lost ownership) and claims it again when the
store answers. In a full outage the SDK's balancing fails earlier, at ``list_ownership``,
and then keeps every partition; so once an owned partition is past the expiry, a failing
``list_ownership`` answers with the last list it read instead of raising, and the claim
that follows (which cannot reach the store either) drops the partition as above.
Both calls are bounded by half the expiry: storage that hangs instead of refusing (a
black-holed network) must not keep the balancing loop, and so the partitions, forever.
Everything else is the wrapped store's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Key = tuple[str, str, str, str]


def _key(ownership: dict[str, Any]) -> Key:
    return (ownership["fully_qualified_namespace"], ownership["eventhub_name"],
            ownership["consumer_group"], ownership["partition_id"])


class RenewalCheckedStore:
    def __init__(self, store: Any, expiry_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._expiry = expiry_s
        self._clock = clock
        self._renewed: dict[Key, float] = {}  # partition -> last successful claim
        self._last_listed: list[dict[str, Any]] = []

    async def list_ownership(self, fully_qualified_namespace: str, eventhub_name: str,
                             consumer_group: str, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            listed = list(await asyncio.wait_for(self._store.list_ownership(
                fully_qualified_namespace, eventhub_name, consumer_group, **kwargs),
                self._expiry / 2))
        except Exception:
            now = self._clock()
            if not any(now - at > self._expiry for at in self._renewed.values()):
                raise  # within the expiry: the SDK keeps its partitions and retries
            return [dict(o) for o in self._last_listed]
        self._last_listed = [dict(o) for o in listed]
        return listed

    async def claim_ownership(self, ownership_list: Iterable[dict[str, Any]],
                              **kwargs: Any) -> list[dict[str, Any]]:
        claims = list(ownership_list)
        sent = {_key(o): o.get("etag") for o in claims}
        try:
            claimed = list(await asyncio.wait_for(
                self._store.claim_ownership(claims, **kwargs), self._expiry / 2))
        except TimeoutError:
            claimed = claims  # nothing renewed: as the store reports a claim that raised
        now = self._clock()
        kept: list[dict[str, Any]] = []
        for ownership in claimed:
            key = _key(ownership)
            renewed = ownership.get("etag") is not None and ownership.get("etag") != sent.get(key)
            if renewed:
                self._renewed[key] = now
            elif key not in self._renewed:
                continue  # a new claim that never reached the store: not ours
            elif now - self._renewed[key] > self._expiry:
                log.warning("ownership.not_renewed", partition=key[3], hub=key[1],
                            group=key[2], unrenewed_s=round(now - self._renewed[key], 1))
                del self._renewed[key]
                continue
            kept.append(ownership)
        return kept

    def __getattr__(self, name: str) -> Any:
        # update_checkpoint, list_checkpoints: the wrapped store's own.
        return getattr(self._store, name)
