"""Results arrive at least once; this keeps the first of each ``(request_id, attempt)``."""

from __future__ import annotations

from collections import OrderedDict


class Deduplicator:
    """Remembers the last ``capacity`` keys (bounded memory for long-running followers)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, key: tuple[str, int]) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
