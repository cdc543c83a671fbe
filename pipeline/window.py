"""Which events of a partition are finished, and how far a checkpoint may go.

Events finish out of order (bounded concurrency); the checkpoint may only cover the prefix
of events that are *all* finished. An event that could not be finished (not even
dead-lettered) blocks the prefix for good: the checkpoint never passes it, so a restart
delivers it again.
"""

from __future__ import annotations

from collections import deque

from pipeline.bus.ports import ReceivedEvent


class CheckpointWindow:
    def __init__(self) -> None:
        self._order: deque[ReceivedEvent] = deque()
        self._finished: set[int] = set()
        self._blocked: set[int] = set()
        self.checkpointable: ReceivedEvent | None = None  # newest event the prefix reaches
        self.checkpointed_seq: int = -1
        self.received_seq: int = -1

    def add(self, event: ReceivedEvent) -> None:
        self._order.append(event)
        self.received_seq = max(self.received_seq, event.sequence_number)

    def finish(self, event: ReceivedEvent, ok: bool) -> None:
        (self._finished if ok else self._blocked).add(event.sequence_number)
        while self._order and self._order[0].sequence_number in self._finished:
            head = self._order.popleft()
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

    @property
    def blocked(self) -> bool:
        return bool(self._order) and self._order[0].sequence_number in self._blocked

    def mark_checkpointed(self, event: ReceivedEvent) -> None:
        self.checkpointed_seq = max(self.checkpointed_seq, event.sequence_number)
