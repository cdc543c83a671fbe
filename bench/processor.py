"""The processor's own per-event cost on the memory bus, against the bus alone, same run.

    python bench/processor.py [-n 200000] [--rounds 1] [--profile FILE]

One partition of the embedded memory bus (claim check on, as ``build_bus`` makes it) holds
``n`` request events, each with its own request id (the partition key), published by the
request producer. Baseline, the adapter floor: the bus's subscription read directly by a
receiver that does nothing but checkpoint every ``CHECKPOINT_EVERY`` events, as the
processor does by default. Then the real processor (default ``ProcessorSettings``: 16 in
flight, checkpoint every 100 events; the service's metric families on one registry; a
no-op handler) reads the same events in a consumer group of its own. Each side is timed
from the subscription's start until it has stopped after seeing the last event: every event
decoded, handled and finished, and the checkpoint written at shutdown covering the last
(checked). Rounds alternate the two sides.
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
from pipeline.bus.ports import PartitionContext, ReceivedEvent
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


@dataclass(frozen=True)
class Figures:
    rate: float  # events/s
    cpu_us: float  # CPU per event, µs
    writes: int  # checkpoint writes


class _Floor:
    """A PartitionReceiver that only checkpoints, at the processor's cadence, and on a
    shutdown close (as the processor does)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.since = n, 0, 0
        self.last: ReceivedEvent | None = None
        self.all_seen = asyncio.Event()

    async def on_open(self, ctx: PartitionContext) -> None:
        pass

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        self.seen += len(events)
        self.since += len(events)
        self.last = events[-1]
        if self.since >= CHECKPOINT_EVERY:
            await ctx.checkpoint(events[-1])
            self.since = 0
        if self.seen >= self.n:
            self.all_seen.set()

    async def on_close(self, ctx: PartitionContext, reason: str) -> None:
        if reason == "shutdown" and self.since and self.last is not None:
            await ctx.checkpoint(self.last)


async def _covered(bus: ClaimCheckBus, group: str, n: int) -> None:
    (checkpoint,) = await bus.list_checkpoints(HUB, group)
    assert checkpoint.sequence_number == n - 1, f"checkpoint at {checkpoint.sequence_number}"


async def floor(bus: ClaimCheckBus, store: MemoryCheckpointStore, n: int) -> Figures:
    group = f"floor-{uuid.uuid4().hex[:6]}"
    writes0 = store.checkpoint_writes
    subscription, receiver = bus.subscribe(HUB, group), _Floor(n)
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(subscription.run(receiver))
    await asyncio.wait_for(receiver.all_seen.wait(), 600)
    await subscription.stop()
    await task
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await _covered(bus, group, n)
    return Figures(n / wall, cpu / n * 1e6, store.checkpoint_writes - writes0)


async def processor(bus: ClaimCheckBus, store: MemoryCheckpointStore, metrics: Metrics,
                    n: int, profile: cProfile.Profile | None = None) -> Figures:
    group = f"proc-{uuid.uuid4().hex[:6]}"
    writes0 = store.checkpoint_writes
    handled, all_handled = 0, asyncio.Event()

    async def no_op(event: Event, ctx: EventContext) -> Sequence[Emit]:
        nonlocal handled
        handled += 1
        if handled >= n:
            all_handled.set()
        return ()

    proc = Processor(name="bench", bus=bus, hub=HUB, consumer_group=group, handler=no_op,
                     accepts=frozenset({"request"}), deadletter_hub="deadletter",
                     settings=SETTINGS, metrics=metrics.pipeline)
    if profile is not None:
        profile.enable()
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(proc.run())
    await asyncio.wait_for(all_handled.wait(), 600)
    await proc.stop(5)  # the rest finishes, then the last checkpoint is written
    await task
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profile is not None:
        profile.disable()
    await _covered(bus, group, n)
    ok = metrics.pipeline.registry.get_sample_value(
        "llmexec_events_processed_total", {"worker": "bench", "hub": HUB, "outcome": "ok"})
    assert ok == n, f"{ok} of {n} events counted ok"
    return Figures(n / wall, cpu / n * 1e6, store.checkpoint_writes - writes0)


async def main(n: int, rounds: int, profile_to: str | None) -> bool:
    store = MemoryCheckpointStore()
    # As build_bus makes the memory backend, on one partition, with its store at hand.
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
