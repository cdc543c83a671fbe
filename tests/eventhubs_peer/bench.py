"""Quick numbers for the peer with the real aio SDK: ``python -m tests.eventhubs_peer.bench``.

Latency: one event at a time, send -> on_event. Throughput: batches of 1 KB events, from the
first send until the consumer has seen the last event. Both are bounded by the SDK (it reads
one frame per 50 ms poll while idle), not by the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from typing import Any

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

from .server import EventHubsPeer


async def run(samples: int, events: int, size: int, conn_str: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if conn_str is None:  # else: a peer in another process, e.g. `-m tests.eventhubs_peer`
            conn_str = (
                await stack.enter_async_context(EventHubsPeer({"bench": 1}))
            ).connection_string
        producer = EventHubProducerClient.from_connection_string(conn_str, eventhub_name="bench")
        consumer = EventHubConsumerClient.from_connection_string(
            conn_str,
            consumer_group="$Default",
            eventhub_name="bench",
            load_balancing_interval=0.2,
        )
        received: list[float] = []
        arrived = asyncio.Event()
        target = 0

        async def on_event(_context: Any, _event: Any) -> None:
            received.append(time.perf_counter())
            if len(received) >= target:
                arrived.set()

        task = asyncio.create_task(
            consumer.receive(on_event, partition_id="0", starting_position="@latest", prefetch=300)
        )
        async with producer:
            await producer.send_event(EventData(b"warm-up"), partition_id="0")
            target = 1
            await asyncio.wait_for(arrived.wait(), 30)

            latencies = []
            for _ in range(samples):
                arrived.clear()
                target = len(received) + 1
                sent = time.perf_counter()
                await producer.send_event(EventData(b"ping"), partition_id="0")
                await asyncio.wait_for(arrived.wait(), 10)
                latencies.append(received[-1] - sent)

            arrived.clear()
            start_count = len(received)
            target = start_count + events
            body = b"x" * size
            started = time.perf_counter()
            sent_count = 0
            while sent_count < events:
                batch = await producer.create_batch(partition_id="0")
                while sent_count < events:
                    try:
                        batch.add(EventData(body))
                    except ValueError:
                        break
                    sent_count += 1
                await producer.send_batch(batch)
            send_done = time.perf_counter() - started
            await asyncio.wait_for(arrived.wait(), 120)
            elapsed = received[-1] - started
        await consumer.close()
        await task

    ms = sorted(x * 1000 for x in latencies)
    print(
        f"send->on_event latency over {samples}: median {statistics.median(ms):.1f} ms, "
        f"p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )
    print(
        f"throughput: {events} x {size} B events sent in {send_done:.2f} s, all received after "
        f"{elapsed:.2f} s -> {events / elapsed:,.0f} events/s, "
        f"{events * size / elapsed / 1e6:.1f} MB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--connection-string", help="a running peer with a hub named 'bench'")
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.events, args.size, args.connection_string))


if __name__ == "__main__":
    main()
