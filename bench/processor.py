"""The processor's own per-event cost on the memory bus, against the bus alone, same run.

    python bench/processor.py [-n 200000] [--rounds 1] [--profile FILE]

One partition of the embedded memory bus (claim check on, as ``build_bus`` makes it) holds
``n`` request events, each with its own request id (the partition key), published by the
request producer. Baseline, the adapter floor: the bus's subscription read directly by a
receiver that does nothing but checkpoint every ``CHECKPOINT_EVERY`` events, as the
processor does by default. Then the real processor (default ``ProcessorSettings``: 16 in
flight, checkpoint every 100 events; the service's metric families on one registry; a
no-op handler) reads the same events in a consumer group of its own. Each side is timed
from the subscription's start until the checkpoint store holds the last event: every event
decoded, handled, finished and covered by a checkpoint. Rounds alternate the two sides.
Printed per side: events/s, CPU per event (``time.process_time`` / n; the bus's own cost
included, which is what the baseline measures), the processor's rate as a ratio of the
floor's, and checkpoint writes. Target (issue 13): >= 30,000 events/s on one partition.
``--profile FILE`` writes a cProfile of one processor run (read it with pstats).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow
# the `pipeline` package: put the project root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import cProfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from llmexec.assembly import Metrics
from pipeline.bus.claimcheck import ClaimCheckBus
from pipeline.bus.memory import MemoryBus, MemoryCheckpointStore, MemoryPayloadStore
from pipeline.bus.ports import Checkpoint, PartitionContext, ReceivedEvent
from pipeline.handling import Emit, EventContext
from pipeline.observability.logging import configure_logging
from pipeline.processor import Processor
from pipeline.settings import ProcessorSettings
from producers.client import RequestProducer
from schemas import Event, ExecutionRequest

HUB = "requests"
TARGET = 30_000.0
SETTINGS = ProcessorSettings()  # what the service runs with unless configured otherwise
CHECKPOINT_EVERY = SETTINGS.checkpoint_every


class WatchedStore(MemoryCheckpointStore):
    """The memory store, telling when a group's checkpoint reaches a sequence number."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[str, tuple[int, asyncio.Event]] = {}

    def until(self, group: str, sequence_number: int) -> asyncio.Event:
        reached = asyncio.Event()
        self.waiting[group] = (sequence_number, reached)
        return reached

    async def update_checkpoint(self, checkpoint: Checkpoint) -> None:
        await super().update_checkpoint(checkpoint)
        wanted = self.waiting.get(checkpoint.consumer_group)
        if wanted is not None and checkpoint.sequence_number >= wanted[0]:
            wanted[1].set()


@dataclass(frozen=True)
class Figures:
    rate: float  # events/s
    cpu_us: float  # CPU per event, µs
    writes: int  # checkpoint writes


class _Floor:
    """A PartitionReceiver that only checkpoints, at the processor's cadence."""

    def __init__(self) -> None:
        self.since = 0

    async def on_open(self, ctx: PartitionContext) -> None:
        pass

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        self.since += len(events)
        if self.since >= CHECKPOINT_EVERY:
            await ctx.checkpoint(events[-1])
            self.since = 0

    async def on_close(self, ctx: PartitionContext, reason: str) -> None:
        pass


async def floor(bus: ClaimCheckBus, store: WatchedStore, n: int) -> Figures:
    group = f"floor-{uuid.uuid4().hex[:6]}"
    reached = store.until(group, n - 1)
    writes0 = store.checkpoint_writes
    subscription = bus.subscribe(HUB, group)
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(subscription.run(_Floor()))
    await asyncio.wait_for(reached.wait(), 600)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    writes = store.checkpoint_writes - writes0
    await subscription.stop()
    await task
    return Figures(n / wall, cpu / n * 1e6, writes)


async def _no_op(event: Event, ctx: EventContext) -> Sequence[Emit]:
    return ()


async def processor(bus: ClaimCheckBus, store: WatchedStore, metrics: Metrics, n: int,
                    profile: cProfile.Profile | None = None) -> Figures:
    group = f"proc-{uuid.uuid4().hex[:6]}"
    reached = store.until(group, n - 1)
    writes0 = store.checkpoint_writes
    proc = Processor(name="bench", bus=bus, hub=HUB, consumer_group=group, handler=_no_op,
                     accepts=frozenset({"request"}), deadletter_hub="deadletter",
                     settings=SETTINGS, metrics=metrics.pipeline)
    if profile is not None:
        profile.enable()
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(proc.run())
    await asyncio.wait_for(reached.wait(), 600)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profile is not None:
        profile.disable()
    writes = store.checkpoint_writes - writes0
    await proc.stop(5)
    await task
    ok = metrics.pipeline.events.labels("bench", HUB, "ok")._value.get()
    assert ok >= n, f"only {ok} of {n} events counted ok"
    return Figures(n / wall, cpu / n * 1e6, writes)


async def main(n: int, rounds: int, profile_to: str | None) -> bool:
    store = WatchedStore()
    # As build_bus makes the memory backend, on one partition, with a store we can watch.
    bus = ClaimCheckBus(MemoryBus(partitions=1, store=store), MemoryPayloadStore())
    producer = RequestProducer(bus.publisher(), HUB)
    for start in range(0, n, 1000):
        await producer.submit_many([ExecutionRequest(request_id=f"r{i}", code="pass")
                                    for i in range(start, min(n, start + 1000))])
    profile = cProfile.Profile() if profile_to else None
    runs: list[tuple[Figures, Figures]] = []
    for i in range(rounds):
        base = await floor(bus, store, n)
        # A fresh metrics registry per round: the counts are checked per run.
        ours = await processor(bus, store, Metrics.create(), n, profile if i == 0 else None)
        runs.append((base, ours))
    await bus.close()
    if profile is not None and profile_to:
        profile.dump_stats(profile_to)

    print(f"{n} no-op events, one memory-bus partition, checkpoint every {CHECKPOINT_EVERY}, "
          f"max_concurrency {SETTINGS.max_concurrency}; {rounds} round(s)")
    print(f"{'':<22} {'events/s':>10} {'CPU/event':>11} {'ckpt writes':>12}")
    for i, (base, ours) in enumerate(runs, 1):
        print(f"round {i} floor (bus)    {base.rate:10.0f} {base.cpu_us:8.1f} µs {base.writes:12d}")
        print(f"round {i} processor      {ours.rate:10.0f} {ours.cpu_us:8.1f} µs {ours.writes:12d}"
              f"   {ours.rate / base.rate:.4f}x of the floor, "
              f"+{ours.cpu_us - base.cpu_us:.1f} µs CPU/event over it")
    best = max(runs, key=lambda r: r[1].rate)
    base, ours = best
    print(f"best processor round: {ours.rate:.0f} events/s ({ours.rate / base.rate:.4f}x of "
          f"the floor's {base.rate:.0f}), {ours.cpu_us:.1f} µs CPU/event "
          f"(floor {base.cpu_us:.1f}); target >= {TARGET:,.0f} events/s")
    ok = ours.rate >= TARGET
    print("meets the target" if ok else "misses the target")
    return ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="cProfile of the first processor run")
    args = parser.parse_args()
    configure_logging("WARNING")
    sys.exit(0 if asyncio.run(main(args.n, args.rounds, args.profile)) else 1)
