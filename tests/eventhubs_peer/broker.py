"""The peer's storage: hubs, partition logs, positions and epoch (owner-level) ownership.

Everything here runs on the peer's single event loop, so it needs no locks.
"""

from __future__ import annotations

import bisect
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import codec

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class StoredEvent:
    sequence_number: int
    offset: int
    enqueued_time_ms: int
    partition_key: str | None
    payload: bytes  # what a consumer receives: the producer's bytes + broker annotations


class Partition:
    def __init__(self, hub: str, partition_id: str) -> None:
        self.hub = hub
        self.id = partition_id
        self.events: list[StoredEvent] = []
        self._offsets: list[int] = []
        self._sequences: list[int] = []
        self._times: list[int] = []
        self._next_offset = 0
        self._listeners: set[Callable[[], None]] = set()

    def append(self, raw_event: bytes, partition_key: str | None) -> StoredEvent:
        sequence = len(self.events)
        enqueued = time.time_ns() // NS_PER_MS
        if self._times and enqueued < self._times[-1]:
            enqueued = self._times[-1]  # keep enqueued time monotonic per partition
        annotations: dict[bytes, dict[str, Any]] = {
            b"x-opt-sequence-number": codec.typed("long", sequence),
            b"x-opt-offset": codec.typed("string", str(self._next_offset)),
            b"x-opt-enqueued-time": codec.typed("timestamp", enqueued),
        }
        if partition_key is not None:
            annotations[b"x-opt-partition-key"] = codec.typed("string", partition_key)
        payload = codec.annotated_payload(raw_event, annotations)
        event = StoredEvent(sequence, self._next_offset, enqueued, partition_key, payload)
        self.events.append(event)
        self._offsets.append(event.offset)
        self._sequences.append(sequence)
        self._times.append(enqueued)
        self._next_offset += len(payload)
        for listener in list(self._listeners):
            listener()
        return event

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def start_index(self, selector: str | None) -> int:
        """Index of the first event a receiver with this selector filter gets."""
        if not selector:
            return 0
        match = _SELECTOR.fullmatch(selector.strip())
        if not match:
            raise ValueError(f"unsupported selector filter: {selector!r}")
        name, op, raw = match.group(1), match.group(2), match.group(3)
        if name == "x-opt-offset" and raw == "@latest":
            return len(self.events)
        value = int(raw)
        keys = {
            "x-opt-offset": self._offsets,
            "x-opt-sequence-number": self._sequences,
            "x-opt-enqueued-time": self._times,
        }[name]
        return bisect.bisect_left(keys, value) if op == ">=" else bisect.bisect_right(keys, value)

    def properties(self) -> dict[str, Any]:
        last = self.events[-1] if self.events else None
        return {
            "name": self.hub,
            "partition": self.id,
            "begin_sequence_number": codec.typed("long", 0),
            "last_enqueued_sequence_number": codec.typed(
                "long", last.sequence_number if last else -1
            ),
            "last_enqueued_offset": str(last.offset) if last else "-1",
            "last_enqueued_time_utc": codec.typed(
                "timestamp", last.enqueued_time_ms if last else 0
            ),
            "is_partition_empty": last is None,
        }


_SELECTOR = re.compile(
    r"amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)"
    r"\s*(>=|>)\s*'([^']*)'"
)


@dataclass
class Hub:
    name: str
    partitions: dict[str, Partition]
    created_at_ms: int = field(default_factory=lambda: time.time_ns() // NS_PER_MS)
    _round_robin: itertools.cycle[str] | None = None

    def route(self, partition_key: str | None) -> Partition:
        ids = list(self.partitions)
        if partition_key is not None:
            return self.partitions[ids[abs(codec.partition_hash(partition_key) % len(ids))]]
        if self._round_robin is None:
            self._round_robin = itertools.cycle(ids)
        return self.partitions[next(self._round_robin)]

    def properties(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": codec.typed("timestamp", self.created_at_ms),
            "partition_ids": list(self.partitions),
        }


class Owner:
    """What the broker needs from a receiver link to let a higher epoch steal it."""

    epoch: int | None

    def steal(self, description: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class Broker:
    def __init__(self, hubs: dict[str, int]) -> None:
        if not hubs:
            raise ValueError("at least one hub is needed")
        self.hubs = {
            name: Hub(name, {str(i): Partition(name, str(i)) for i in range(count)})
            for name, count in hubs.items()
        }
        self._owners: dict[tuple[str, str, str], set[Owner]] = {}

    def hub(self, name: str) -> Hub:
        try:
            return self.hubs[name]
        except KeyError:
            raise LookupError(f"The messaging entity '{name}' could not be found.") from None

    def partition(self, hub: str, partition_id: str) -> Partition:
        try:
            return self.hub(hub).partitions[partition_id]
        except KeyError:
            raise LookupError(f"partition '{partition_id}' of '{hub}' does not exist") from None

    def claim(self, hub: str, consumer_group: str, partition_id: str, owner: Owner) -> str | None:
        """Register a receiver; returns a refusal if a higher epoch already owns the partition.

        Same rule as the service: a receiver with epoch e disconnects every receiver with
        epoch <= e and every non-epoch receiver; a non-epoch or lower-epoch receiver is
        refused while an epoch receiver is attached.
        """
        owners = self._owners.setdefault((hub, consumer_group, partition_id), set())
        epochs = [o.epoch for o in owners if o.epoch is not None]
        if epochs and (owner.epoch is None or owner.epoch < max(epochs)):
            return (
                f"Receiver with epoch {owner.epoch} cannot be created because a receiver with "
                f"epoch {max(epochs)} already exists on consumer group '{consumer_group}', "
                f"partition '{partition_id}'."
            )
        if owner.epoch is not None:
            for other in list(owners):
                owners.discard(other)
                other.steal(
                    f"New receiver with higher epoch of '{owner.epoch}' is created hence current "
                    f"receiver with epoch '{other.epoch}' is getting disconnected."
                )
        owners.add(owner)
        return None

    def release(self, hub: str, consumer_group: str, partition_id: str, owner: Owner) -> None:
        self._owners.get((hub, consumer_group, partition_id), set()).discard(owner)
