"""Do LLM calls overlap? Push N prompt requests through the embedded pipeline while the local
Messages API answers each call after a fixed delay D, and compare the throughput with the
ideal, concurrency / D.

    python bench/llm_concurrency.py [-n 640] [--delay 2.0] [--concurrency 64] [--partitions 4]
                                    [--mode llm|embedded|both]

The real Anthropic SDK talks to tests/fakes/anthropic_server.py on 127.0.0.1, run in its own
process (the API's CPU is not the worker's, as in production). The processor
may run ``concurrency`` handlers per partition and LLM_MAX_CONCURRENCY = ``concurrency``
bounds the calls across partitions, so the LLM bound is the binding one, as in production.

``llm``: memory bus, the LLM worker on the real processor, results follower, and a stand-in
executor (a processor on the executions hub that answers every command at once), so the
figure is the LLM path's, as in production where the executor is another process.
``embedded``: ``run_embedded``, the whole pipeline in this process, real sandbox included:
its subprocess spawns share this process's event loop with the LLM worker.
Reported: the LLM stage (first request submitted -> last API reply) and end to end (-> last
result) against the ideal; the target is the LLM stage at >= 90 % of ideal at concurrency
64. And the prompt-cache hit ratio over the run's distinct requests, as the API's usage
reports it (cache_read_input_tokens / all input tokens; the fake models the API's caching,
see tests/fakes/prompt_cache.py), against its ceiling in the same run (one write, every
other call reading the same prefix); the target is >= 0.8. The first wave of calls is sent
together, before any response has begun, so each of them writes: at concurrency 64 the
ceiling is not reached by design of the API, not of ours.

D defaults to 2 s, the short end of a real code-writing call. The cost that D hides is CPU:
the SDK spends ~3-4 ms per call (building, encoding, parsing; httpcore's pool scan grows
with open connections), and with a fixed D all 64 replies land together, so each wave adds
64 x that before the next one is under way. At D = 1 s on a busy 2-core machine that is
~80 % of ideal; at D = 2 s ~90 %.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the project root there
# instead, so the packages and tests.fakes import.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import SecretStr

from consumers.results import ResultFollower
from llm_worker.generator import CodeGenerator
from llm_worker.settings import LlmSettings
from llmexec import assembly
from llmexec.config import AppConfig
from llmexec.embedded import run_embedded
from pipeline.bus.memory import MemoryBus
from pipeline.bus.settings import BusSettings
from pipeline.handling import Emit, EventContext
from pipeline.observability.logging import configure_logging
from pipeline.processor import Processor
from pipeline.resources import closing
from pipeline.settings import ProcessorSettings
from producers.client import RequestProducer
from schemas import Event, ExecutionCommand, ExecutionRequest, ExecutionResult, ResultStatus

TARGET = 0.9
CACHE_TARGET = 0.8
ROOT = Path(__file__).resolve().parents[1]


def config(base_url: str, concurrency: int, partitions: int) -> AppConfig:
    return AppConfig.build(
        bus=BusSettings(memory_partitions=partitions),
        processor=ProcessorSettings(max_concurrency=concurrency, transient_retries=1,
                                    checkpoint_interval_s=1.0),
        llm=LlmSettings(max_retries=1, llm_api_key=SecretStr("bench"), anthropic_base_url=base_url,
                        llm_max_concurrency=concurrency, llm_timeout_s=60),
    )


async def llm_only(cfg: AppConfig, requests: list[ExecutionRequest]) -> dict[str, ExecutionResult]:
    """The embedded pipeline with a stand-in executor that answers every command at once."""
    bus = MemoryBus(partitions=cfg.bus.memory_partitions)
    metrics = assembly.Metrics.create()
    async with assembly.open_generator(cfg) as generator, closing(bus):
        return await _llm_only(cfg, requests, bus, metrics, generator)


async def _llm_only(cfg: AppConfig, requests: list[ExecutionRequest], bus: MemoryBus,
                    metrics: assembly.Metrics,
                    generator: CodeGenerator | None) -> dict[str, ExecutionResult]:
    hubs = cfg.bus.hubs

    async def instant(event: Event, ctx: EventContext) -> Sequence[Emit]:
        assert isinstance(event, ExecutionCommand)
        return [Emit(hubs.results, ExecutionResult(
            request_id=event.request_id, attempt=event.attempt, status=ResultStatus.SUCCEEDED,
            code=event.code))]

    processors = [
        assembly.llm_processor(bus, cfg, metrics, generator=generator),
        Processor(name="stand-in-executor", bus=bus, hub=hubs.executions,
                  consumer_group="executor", handler=instant, accepts=frozenset({"execution"}),
                  deadletter_hub=hubs.deadletter, settings=cfg.processor,
                  metrics=metrics.pipeline),
    ]
    runs = [asyncio.create_task(p.run()) for p in processors]
    follower = ResultFollower(bus, hubs)
    try:
        await RequestProducer(bus.publisher(), hubs.requests).submit_many(requests)
        return await follower.wait_for([r.request_id for r in requests], timeout_s=600)
    finally:
        await follower.close()
        await asyncio.gather(*(p.stop(grace_s=5.0) for p in processors))
        await asyncio.gather(*runs, return_exceptions=True)


@contextlib.asynccontextmanager
async def fake_api(delay: float) -> AsyncIterator[str]:
    """The fake Messages API in its own process: its CPU is not the worker's, as with the
    real API. Yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.anthropic_server", "--delay", str(delay),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield (await proc.stdout.readline()).decode().strip()
    finally:
        proc.stdin.close()
        await proc.wait()


async def api_stats(base_url: str) -> dict[str, Any]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /_fake/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


async def bench(mode: str, n: int, delay: float, concurrency: int,
                partitions: int) -> tuple[float, float]:
    async with fake_api(delay) as base_url:
        cfg = config(base_url, concurrency, partitions)
        requests = [ExecutionRequest(request_id=f"bench-{mode}-{i}", prompt=f"task {i}")
                    for i in range(n)]
        started = time.monotonic()  # CLOCK_MONOTONIC: comparable with the server's times
        run = llm_only if mode == "llm" else run_embedded
        results = await run(cfg, requests)
        finished = time.monotonic()
        stats = await api_stats(base_url)
        failed = [r for r in results.values() if r.status is not ResultStatus.SUCCEEDED]
        if len(results) != n or failed or stats["requests"] != n:
            raise SystemExit(f"bench broken: {len(results)}/{n} results, {len(failed)} failed, "
                             f"{stats['requests']} API calls "
                             f"({failed[0].error if failed else ''})")
        llm_elapsed = float(max(stats["replied"])) - started
        ideal = concurrency / delay
        llm_rate, e2e_rate = n / llm_elapsed, n / (finished - started)
        print(f"[{mode}] requests {n}, API delay {delay:g}s, concurrency {concurrency}, "
              f"partitions {partitions}, peak calls in flight at the API "
              f"{stats['max_in_flight']}")
        print(f"  first API call {min(stats['arrived']) - started:.2f}s after the first submit")
        print(f"  ideal      {ideal:8.1f} req/s  (concurrency / delay)")
        print(f"  LLM stage  {llm_rate:8.1f} req/s  {llm_rate / ideal:6.1%} of ideal  "
              f"({llm_elapsed:.2f}s, lower bound {n / ideal:.2f}s)")
        print(f"  end to end {e2e_rate:8.1f} req/s  {e2e_rate / ideal:6.1%} of ideal  "
              f"({finished - started:.2f}s)")
        t = stats["tokens"]
        read, written = t["cache_read_input_tokens"], t["cache_creation_input_tokens"]
        total = t["input_tokens"] + read + written
        prefix = written / max(1, stats["cache_writes"])  # tokens one write puts in the cache
        ceiling = (read + written - prefix) / total
        hit = read / total
        print(f"  prompt cache: {read}/{total} input tokens read from the cache = {hit:.3f} "
              f"(ceiling {ceiling:.3f}: one write, all others read; {hit / ceiling:.1%} of it; "
              f"{stats['cache_writes']} calls wrote, prefix {prefix:.0f} tokens)")
        return llm_rate / ideal, hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=640)
    parser.add_argument("--delay", type=float, default=2.0, help="API answer delay D (s)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--mode", choices=["llm", "embedded", "both"], default="both")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # A service imports the SDK once at start; keep that (seconds here) off the clock.
    import llm_worker.anthropic_client  # noqa: F401
    modes = ["llm", "embedded"] if args.mode == "both" else [args.mode]
    results = {m: asyncio.run(bench(m, args.n, args.delay, args.concurrency, args.partitions))
               for m in modes}
    ok = True
    for mode, (share, hit) in results.items():
        verdict = "meets" if share >= TARGET else "misses"
        print(f"[{mode}] LLM stage {verdict} the target of {TARGET:.0%} of ideal ({share:.1%})")
        verdict = "meets" if hit >= CACHE_TARGET else "misses"
        print(f"[{mode}] prompt-cache hit ratio {verdict} the target of {CACHE_TARGET} "
              f"({hit:.3f})")
        ok = ok and hit >= CACHE_TARGET and (mode != "llm" or share >= TARGET)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
