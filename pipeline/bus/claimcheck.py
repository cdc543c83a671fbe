"""Claim check: events too big for one hub event travel as a blob plus a small reference.

Wraps any bus. Publishing: a body over the threshold is stored in a payload store under
its SHA-256 (so a redelivered event stores the same blob and publishes the same
reference) and replaced by a ``claim_check`` envelope. Receiving: envelopes are resolved
back to the original body (verified against its hash) before anyone sees them, so the
processor, workers and consumers never know. Fetching retries transient store errors with
the pipeline's one retry primitive (``RetryPolicy``); an envelope whose blob cannot be
fetched (missing: ``PayloadMissingError``, or still unreachable) is delivered as is;
decoding it fails with a clear reason and it is dead-lettered with the reference, ready to
replay.

Other systems reading a hub directly see the envelope: ``{"kind": "claim_check",
"ref": ..., "size": ..., "sha256": ...}`` with the event property ``claim_check=1``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import structlog

from pipeline.bus.ports import (
    MAX_EVENT_BYTES,
    Bus,
    Checkpoint,
    OutgoingEvent,
    Ownership,
    PartitionContext,
    PartitionInfo,
    PartitionReceiver,
    Publisher,
    ReceivedEvent,
    StartPosition,
    Subscription,
)
from pipeline.bus.resource import AsyncResource
from pipeline.retries import RetryPolicy

log = structlog.get_logger(__name__)

#: Bodies above this go by claim check; the margin leaves room for properties and the
#: AMQP framing of a batch.
DEFAULT_THRESHOLD = MAX_EVENT_BYTES - 64 * 1024
CLAIM_PROPERTY = "claim_check"
#: Fetch tries for one payload: the first, then two retries of a transient store error.
DEFAULT_FETCH_RETRY = RetryPolicy(max_retries=2, backoff_s=0.2, backoff_max_s=1.0)


class PayloadStore(Protocol):
    """Where claim-checked bodies live. ``get`` raises ``PayloadMissingError`` when nothing
    is stored under the reference and a ``TransientError`` when the store is unreachable."""

    async def put(self, name: str, data: bytes) -> str:
        """Store ``data`` (idempotently) and return a reference for :meth:`get`."""
        ...

    async def get(self, ref: str) -> bytes: ...

    async def close(self) -> None: ...


class ClaimCheckPublisher(AsyncResource):
    def __init__(self, inner: Publisher, store: PayloadStore, threshold: int) -> None:
        self._inner = inner
        self._store = store
        self._threshold = threshold

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        out = [await self._maybe_offload(hub, e) for e in events]
        await self._inner.publish(hub, out)

    async def _maybe_offload(self, hub: str, event: OutgoingEvent) -> OutgoingEvent:
        if len(event.body) <= self._threshold:
            return event
        digest = hashlib.sha256(event.body).hexdigest()
        ref = await self._store.put(f"{hub}/{digest}", event.body)
        envelope = {"kind": "claim_check", "schema_version": 1, "ref": ref,
                    "size": len(event.body), "sha256": digest,
                    "request_id": event.properties.get("request_id") or None}
        log.info("claimcheck.offloaded", hub=hub, size=len(event.body), ref=ref)
        return replace(event, body=json.dumps(envelope).encode(),
                       properties={**event.properties, CLAIM_PROPERTY: "1"})

    async def close(self) -> None:
        await self._inner.close()


class _ResolvingReceiver:
    def __init__(self, inner: PartitionReceiver, store: PayloadStore, retry: RetryPolicy) -> None:
        self._inner = inner
        self._store = store
        self._retry = retry

    async def on_open(self, ctx: PartitionContext) -> None:
        await self._inner.on_open(ctx)

    async def on_close(self, ctx: PartitionContext, reason: str) -> None:
        await self._inner.on_close(ctx, reason)

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        resolved = [await self._resolve(e) if e.properties.get(CLAIM_PROPERTY) == "1" else e
                    for e in events]
        await self._inner.on_events(ctx, resolved)

    async def _resolve(self, event: ReceivedEvent) -> ReceivedEvent:
        try:
            envelope = json.loads(event.body)
            ref, digest = envelope["ref"], envelope["sha256"]
        except (ValueError, KeyError, TypeError):
            return event

        async def fetch(_try: int) -> bytes:
            return await self._store.get(ref)

        def on_retry(tries: int, exc: BaseException) -> None:
            log.info("claimcheck.fetch_retry", ref=ref, tries=tries, error=str(exc))

        try:
            body = await self._retry.call(fetch, on_retry)
        except Exception as exc:  # missing or still unreachable: let decoding report it
            log.warning("claimcheck.fetch_failed", ref=ref, error=str(exc))
            return event
        if hashlib.sha256(body).hexdigest() != digest:
            log.error("claimcheck.hash_mismatch", ref=ref)
            return event
        props = {k: v for k, v in event.properties.items() if k != CLAIM_PROPERTY}
        return replace(event, body=body, properties=props)


class ClaimCheckBus(AsyncResource):
    """A bus whose publishers offload big bodies and whose subscriptions resolve them."""

    def __init__(self, inner: Bus, store: PayloadStore,
                 threshold: int = DEFAULT_THRESHOLD, *,
                 fetch_retry: RetryPolicy = DEFAULT_FETCH_RETRY) -> None:
        self.inner = inner
        self.store = store
        self._threshold = threshold
        self._retry = fetch_retry

    def publisher(self) -> ClaimCheckPublisher:
        return ClaimCheckPublisher(self.inner.publisher(), self.store, self._threshold)

    def subscribe(self, hub: str, consumer_group: str, *, owner_id: str | None = None,
                  start: StartPosition = "earliest") -> Subscription:
        return _ResolvingSubscription(
            self.inner.subscribe(hub, consumer_group, owner_id=owner_id, start=start),
            self.store, self._retry,
        )

    async def partition_ids(self, hub: str) -> list[str]:
        return await self.inner.partition_ids(hub)

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        return await self.inner.list_checkpoints(hub, consumer_group)

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        return await self.inner.list_ownership(hub, consumer_group)

    async def partition_info(self, hub: str, partition_id: str) -> PartitionInfo:
        return await self.inner.partition_info(hub, partition_id)

    def connected(self) -> bool:
        return self.inner.connected()

    async def close(self) -> None:
        await self.inner.close()
        await self.store.close()


class _ResolvingSubscription:
    def __init__(self, inner: Subscription, store: PayloadStore, retry: RetryPolicy) -> None:
        self._inner = inner
        self._store = store
        self._retry = retry

    async def run(self, receiver: PartitionReceiver) -> None:
        await self._inner.run(_ResolvingReceiver(receiver, self._store, self._retry))

    async def stop(self) -> None:
        await self._inner.stop()

    def owned_partitions(self) -> frozenset[str]:
        return self._inner.owned_partitions()

    async def abandon(self) -> None:
        await self._inner.abandon()  # type: ignore[attr-defined]
