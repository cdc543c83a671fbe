"""Push N code requests through the embedded pipeline and, in the same run, run the same
snippets as bare ``python -c`` subprocesses. Prints throughput, p50/p95 latency of both,
and the ratios.

    python bench/pipeline.py [-n 200] [--concurrency 16]

All N requests are submitted at once. Latency is per request from submission to result
(queueing included) in both: publish -> result at the follower for the pipeline, task
start -> process exit for the bare baseline, which runs the same snippets with the
same concurrency.
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
import os
import statistics
import time

from consumers.results import ResultFollower
from llm_worker.settings import LlmSettings
from llmexec.config import AppConfig
from llmexec.embedded import running_pipeline
from pipeline.bus.memory import MemoryBus
from pipeline.observability.logging import configure_logging
from pipeline.settings import ProcessorSettings
from producers.client import RequestProducer
from schemas import ExecutionRequest, ResultStatus


def snippet(i: int) -> str:
    return f"print(sum(x * x for x in range({i % 50 + 1})))"


def real_python() -> str:
    return os.path.realpath(sys.executable)


async def bare(n: int, concurrency: int) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()  # from submission, queueing included, as in the pipeline
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                real_python(), "-I", "-c", snippet(i), env={},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            await proc.communicate()
            assert proc.returncode == 0
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0, latencies


async def through_pipeline(n: int, concurrency: int) -> tuple[float, list[float]]:
    cfg = AppConfig.build(
        processor=ProcessorSettings(max_concurrency=concurrency, checkpoint_interval_s=1.0),
        llm=LlmSettings(llm_api_key=None),
    )
    bus = MemoryBus(partitions=4)
    async with running_pipeline(cfg, bus=bus):
        return await _measure(bus, cfg, n)


async def _measure(bus: MemoryBus, cfg: AppConfig, n: int) -> tuple[float, list[float]]:
    follower = ResultFollower(bus, cfg.bus.hubs)
    producer = RequestProducer(bus.publisher(), cfg.bus.hubs.requests)
    await asyncio.sleep(0.5)  # partitions owned before the clock starts
    sent: dict[str, float] = {}
    latencies: list[float] = []
    reqs = [ExecutionRequest(request_id=f"bench-{i}", code=snippet(i)) for i in range(n)]
    t0 = time.perf_counter()
    for req in reqs:
        sent[req.request_id] = time.perf_counter()
        await producer.submit(req)
    async for result in follower.results():
        assert result.status is ResultStatus.SUCCEEDED, result.error
        latencies.append(time.perf_counter() - sent[result.request_id])
        if len(latencies) == n:
            break
    elapsed = time.perf_counter() - t0
    await follower.close()
    return elapsed, latencies


def describe(name: str, n: int, elapsed: float, lat: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(lat, n=100)
    p50, p95, rate = q[49] * 1000, q[94] * 1000, n / elapsed
    print(f"{name:<10} {rate:8.1f} req/s   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    return rate, p50, p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    configure_logging("WARNING")
    print(f"{args.n} requests, concurrency {args.concurrency}, python {real_python()}")
    b = describe("bare", args.n, *asyncio.run(bare(args.n, args.concurrency)))
    p = describe("pipeline", args.n, *asyncio.run(through_pipeline(args.n, args.concurrency)))
    print(f"ratio pipeline/bare: throughput {p[0] / b[0]:.2f}x   "
          f"p50 {p[1] / b[1]:.2f}x   p95 {p[2] / b[2]:.2f}x")


if __name__ == "__main__":
    main()
