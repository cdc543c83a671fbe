"""Ownership that is not renewed is not kept (pipeline.bus.eventhubs.ownership).

The double below answers as the SDK's BlobCheckpointStore documents and does: a claim
that reaches the store gets a new etag; a claim that raises inside it (storage
unreachable) comes back unchanged, "kept"; list_ownership raises while storage is down.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pipeline.bus.eventhubs.ownership import RenewalCheckedStore


class BlobStoreDouble:
    def __init__(self) -> None:
        self.down = False
        self._etags = itertools.count(1)
        self.blobs: dict[str, dict[str, Any]] = {}

    async def list_ownership(self, ns: str, hub: str, group: str) -> list[dict[str, Any]]:
        if self.down:
            raise ConnectionError("storage unreachable")
        return [dict(o) for o in self.blobs.values()]

    async def claim_ownership(self, claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for claim in claims:
            updated = dict(claim)
            if not self.down:
                updated["etag"] = f"e{next(self._etags)}"
                self.blobs[claim["partition_id"]] = dict(updated)
            out.append(updated)  # the SDK keeps a claim whose upload raised
        return out

    async def list_checkpoints(self, ns: str, hub: str, group: str) -> list[dict[str, Any]]:
        return []


def claim(partition: str, etag: str | None = None) -> dict[str, Any]:
    return {"fully_qualified_namespace": "ns", "eventhub_name": "h", "consumer_group": "g",
            "partition_id": partition, "owner_id": "me", "etag": etag}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def renew(store: RenewalCheckedStore, owned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    await store.list_ownership("ns", "h", "g")
    return await store.claim_ownership([dict(o) for o in owned])


async def test_unrenewed_partitions_are_dropped_after_the_expiry_and_reclaimed_later() -> None:
    inner, clock = BlobStoreDouble(), Clock()
    store = RenewalCheckedStore(inner, expiry_s=10, clock=clock)
    owned = await store.claim_ownership([claim("0"), claim("1")])
    assert [o["partition_id"] for o in owned] == ["0", "1"]

    inner.down = True
    clock.now += 5  # within the expiry: the SDK's own rule keeps them (list raises)
    with pytest.raises(ConnectionError):
        await store.list_ownership("ns", "h", "g")
    assert [o["partition_id"] for o in await store.claim_ownership(owned)] == ["0", "1"]

    clock.now += 6  # past the expiry, still unreachable
    assert await renew(store, owned) == []  # the SDK closes both partitions

    inner.down = False
    clock.now += 1
    back = await renew(store, [claim("0"), claim("1")])
    assert [o["partition_id"] for o in back] == ["0", "1"]


async def test_a_new_claim_that_never_reached_the_store_is_not_ours() -> None:
    inner = BlobStoreDouble()
    store = RenewalCheckedStore(inner, expiry_s=10, clock=Clock())
    inner.down = True
    assert await store.claim_ownership([claim("3", etag="someone-elses")]) == []


async def test_the_sdk_rule_alone_would_keep_them() -> None:
    """The failure this guards against is real in the double: the unwrapped store keeps a
    partition whose renewal never reached storage."""
    inner = BlobStoreDouble()
    owned = await inner.claim_ownership([claim("0")])
    inner.down = True
    assert [o["partition_id"] for o in await inner.claim_ownership(owned)] == ["0"]


async def test_other_calls_reach_the_wrapped_store() -> None:
    store = RenewalCheckedStore(BlobStoreDouble(), expiry_s=10)
    assert await store.list_checkpoints("ns", "h", "g") == []
