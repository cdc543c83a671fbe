"""In-memory checkpoint store with etag-guarded ownership, like the SDK's blob store."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import replace

from pipeline.bus.ports import Checkpoint, Ownership
from pipeline.bus.resource import AsyncResource


class MemoryCheckpointStore(AsyncResource):
    def __init__(self) -> None:
        self._ownership: dict[tuple[str, str, str], Ownership] = {}
        self._checkpoints: dict[tuple[str, str, str], Checkpoint] = {}
        self._etags = itertools.count(1)
        #: Checkpoint writes so far; tests and benchmarks read it to check batching.
        self.checkpoint_writes = 0

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        return [o for (h, cg, _), o in self._ownership.items() if (h, cg) == (hub, consumer_group)]

    async def claim_ownership(self, claims: Sequence[Ownership]) -> list[Ownership]:
        won = []
        for claim in claims:
            key = (claim.hub, claim.consumer_group, claim.partition_id)
            current = self._ownership.get(key)
            if current is not None and current.etag != claim.etag:
                continue  # somebody else changed it since the claimer looked
            record = replace(claim, last_modified=time.monotonic(), etag=str(next(self._etags)))
            self._ownership[key] = record
            won.append(record)
        return won

    async def update_checkpoint(self, checkpoint: Checkpoint) -> None:
        key = (checkpoint.hub, checkpoint.consumer_group, checkpoint.partition_id)
        self._checkpoints[key] = checkpoint
        self.checkpoint_writes += 1

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        return [
            c for (h, cg, _), c in self._checkpoints.items() if (h, cg) == (hub, consumer_group)
        ]
