"""Partition load balancing among the members of one consumer group.

The same rule the Event Hubs SDK's processor follows: every live member aims at an equal
share (``n // members``, and ``+1`` for the first ``n % members`` of them); a member below
its share takes unowned or expired partitions first, and otherwise steals from the member
that owns the most. Ownership expires when its owner stops renewing it (a crashed member).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pipeline.bus.ports import Ownership


def plan_claims(
    me: str,
    partition_ids: Sequence[str],
    ownerships: Sequence[Ownership],
    now: float,
    expiry_s: float,
) -> list[tuple[str, Ownership | None]]:
    """Partitions ``me`` should claim now, each with the record it replaces (for the etag).

    Renewals of partitions ``me`` already holds are included, so one claim call keeps
    them alive.
    """
    by_partition = {o.partition_id: o for o in ownerships}
    live = {
        pid: o
        for pid, o in by_partition.items()
        if o.owner_id and now - o.last_modified < expiry_s and pid in partition_ids
    }
    members = {o.owner_id for o in live.values()} | {me}
    mine = [pid for pid, o in live.items() if o.owner_id == me]
    counts = Counter(o.owner_id for o in live.values())

    base, extra = divmod(len(partition_ids), len(members))
    over_base = sum(1 for m in members if counts.get(m, 0) > base)
    # I may hold base+1 if fewer than `extra` members already do (or I am one of them).
    may_hold = base + 1 if (counts.get(me, 0) > base or over_base < extra) else base
    want = max(0, may_hold - len(mine))

    claims: list[tuple[str, Ownership | None]] = [(pid, live[pid]) for pid in mine]
    free = [pid for pid in partition_ids if pid not in live]
    for pid in free[:want]:
        claims.append((pid, by_partition.get(pid)))
    want -= min(want, len(free))

    if want > 0 and len(mine) < base:
        # Steal one per round from the richest member holding more than its share, like the SDK.
        richest, held = max(
            ((m, c) for m, c in counts.items() if m != me), key=lambda mc: mc[1], default=("", 0)
        )
        limit = base + 1 if extra else base
        if held > limit or (held == limit and extra and over_base > extra):
            victim = next(pid for pid, o in sorted(live.items()) if o.owner_id == richest)
            claims.append((victim, live[victim]))
    return claims
