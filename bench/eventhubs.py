"""Event Hubs adapter throughput against the local pair (loopback AMQP peer + Azurite).

    python bench/eventhubs.py [-n 5000]

Prints events/s published (batches through our publisher) and consumed (through our
processor, a no-op handler), the checkpoint blob writes per 1,000 events, and the same
figures for the memory bus in the same run as the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import time
import uuid
import warnings
from collections.abc import Sequence

from pipeline.bus.eventhubs import EventHubsBus
from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import Bus, OutgoingEvent
from pipeline.bus.settings import BusSettings
from pipeline.handling import Emit, EventContext
from pipeline.observability.logging import configure_logging
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from pipeline.settings import ProcessorSettings
from schemas import Event, ExecutionRequest
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_blob

HUB = "requests"


async def measure(bus: Bus, n: int) -> tuple[float, float, float]:
    bodies = [ExecutionRequest(request_id=f"b{i}", code="print(1)").to_json_bytes() for i in range(n)]
    publisher = bus.publisher()
    t0 = time.perf_counter()
    for start in range(0, n, 100):
        chunk = bodies[start:start + 100]
        await publisher.publish(HUB, [OutgoingEvent(b, partition_key=f"k{(start + j) % 64}")
                                      for j, b in enumerate(chunk)])
    published = n / (time.perf_counter() - t0)

    done = 0
    finished = asyncio.Event()

    async def handler(event: Event, ctx: EventContext) -> Sequence[Emit]:
        nonlocal done
        done += 1
        if done >= n:
            finished.set()
        return []

    metrics = PipelineMetrics()
    settings = ProcessorSettings(max_concurrency=64, checkpoint_every=200, checkpoint_interval_s=5)
    proc = Processor(name="bench", bus=bus, hub=HUB, consumer_group=f"g{uuid.uuid4().hex[:6]}",
                     handler=handler, accepts=frozenset({"request"}), deadletter_hub="deadletter",
                     settings=settings, metrics=metrics)
    t0 = time.perf_counter()
    task = asyncio.create_task(proc.run())
    await asyncio.wait_for(finished.wait(), 300)
    consumed = n / (time.perf_counter() - t0)
    writes_before_stop = metrics.checkpoints.labels("bench", HUB)._value.get()
    await proc.stop(5)
    await task
    return published, consumed, writes_before_stop * 1000 / n


async def main(n: int) -> None:
    memory = await measure(MemoryBus(partitions=4), n)
    with azurite_blob() as storage:
        async with EventHubsPeer(hubs={HUB: 4, "deadletter": 4}) as peer:
            settings = BusSettings(event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
                                   storage_connection_string=storage,  # type: ignore[arg-type]
                                   checkpoint_container="bench")
            bus = EventHubsBus(settings, load_balancing_interval_s=1, greedy=True)
            eventhubs = await measure(bus, n)
            await bus.close()
    print(f"{n} events, 4 partitions")
    print(f"{'backend':<10} {'publish ev/s':>13} {'consume ev/s':>13} {'checkpoint writes/1000':>23}")
    for name, (pub, con, cps) in (("memory", memory), ("eventhubs", eventhubs)):
        print(f"{name:<10} {pub:13.0f} {con:13.0f} {cps:23.1f}")
    print(f"ratio eventhubs/memory: publish {eventhubs[0] / memory[0]:.3f}x   "
          f"consume {eventhubs[1] / memory[1]:.3f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    configure_logging("WARNING")
    warnings.simplefilter("ignore", ResourceWarning)
    asyncio.run(main(args.n))
