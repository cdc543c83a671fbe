"""Which events of a partition are finished, and how far a checkpoint may go.

Events finish out of order (bounded concurrency); the checkpoint may only cover the prefix
of events that are *all* finished. An event whose outputs are still waiting to be
published (:mod:`pipeline.outbox`) holds the prefix until they go; the window remembers
when each event arrived, so a partition whose prefix has not moved for long is reported
stuck.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from pipeline.bus.ports import ReceivedEvent


class CheckpointWindow:
    def __init__(self) -> None:
        self._order: deque[ReceivedEvent] = deque()
        self._arrived: deque[float] = deque()  # monotonic arrival time, parallel to _order
        self._finished: set[int] = set()
        self._blocked: set[int] = set()
        self.checkpointable: ReceivedEvent | None = None  # newest event the prefix reaches
        self.checkpointed_seq: int = -1
        self.received_seq: int = -1

    def add(self, event: ReceivedEvent) -> None:
        self._order.append(event)
        self._arrived.append(time.monotonic())
        self.received_seq = max(self.received_seq, event.sequence_number)

    def add_all(self, events: Sequence[ReceivedEvent]) -> None:
        """:meth:`add` for events that arrived together."""
        if not events:
            return
        self._order.extend(events)
        self._arrived.extend([time.monotonic()] * len(events))
        self.received_seq = max(self.received_seq, events[-1].sequence_number)

    def finish(self, event: ReceivedEvent, ok: bool) -> None:
        (self._finished if ok else self._blocked).add(event.sequence_number)
        while self._order and self._order[0].sequence_number in self._finished:
            head = self._order.popleft()
            self._arrived.popleft()
            self._finished.discard(head.sequence_number)
            self.checkpointable = head

    @property
    def pending_checkpoint(self) -> int:
        """Finished events not yet covered by a checkpoint."""
        if self.checkpointable is None:
            return 0
        return max(0, self.checkpointable.sequence_number - self.checkpointed_seq)

    @property
    def lag(self) -> int:
        return max(0, self.received_seq - self.checkpointed_seq)

    def oldest_unfinished(self) -> tuple[ReceivedEvent, float] | None:
        """The event the prefix waits for, and when it arrived (monotonic)."""
        if not self._order:
            return None
        return self._order[0], self._arrived[0]

    @property
    def blocked(self) -> bool:
        return bool(self._order) and self._order[0].sequence_number in self._blocked

    def mark_checkpointed(self, event: ReceivedEvent) -> None:
        self.checkpointed_seq = max(self.checkpointed_seq, event.sequence_number)
