"""The whole pipeline in one process on the embedded backends (memory bus, local sandbox,
local heavy runner): what ``llmexec run`` does, and what tests and benchmarks drive.

Both workers run on the real processor and a result follower waits for the answers;
every request is answered exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from consumers.results import ResultFollower
from llmexec import assembly
from llmexec.config import AppConfig
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import Bus
from pipeline.processor import Processor
from pipeline.resources import closing
from producers.client import RequestProducer
from schemas import ExecutionRequest, ExecutionResult

#: Time the pipeline gets beyond the execution limits (LLM round trips, scheduling).
OVERHEAD_S = 120.0


def embedded(cfg: AppConfig) -> AppConfig:
    """The same configuration on the embedded backends: memory bus, local heavy runner."""
    return cfg.replace(
        bus=cfg.bus.model_copy(update={"event_hub_connection_string": None,
                                       "event_hub_namespace": None}),
        execution=cfg.execution.model_copy(update={"heavy_runner": "local"}),
    )


def deadline(cfg: AppConfig, requests: Sequence[ExecutionRequest]) -> float:
    """How long answering ``requests`` may take: every attempt of every wave of them."""
    per_try = max((r.limits.timeout_s or cfg.execution.execution_timeout) for r in requests)
    waves = -(-len(requests) // cfg.processor.max_concurrency)
    return (per_try + OVERHEAD_S) * (cfg.llm.max_attempts + 1) * max(1, waves)


@dataclass(frozen=True)
class Pipeline:
    """A running embedded pipeline: its bus, its processors, its metrics."""

    cfg: AppConfig
    bus: Bus
    processors: tuple[Processor, ...]
    metrics: assembly.Metrics


@asynccontextmanager
async def running_pipeline(cfg: AppConfig, *, bus: Bus | None = None) -> AsyncIterator[Pipeline]:
    """Both workers on ``bus`` (default: a new memory bus), processors running until the
    block ends; then they stop (5 s grace) and every resource closes, in reverse order."""
    cfg = embedded(cfg)
    metrics = assembly.Metrics.create()
    async with AsyncExitStack() as stack:
        if bus is None:
            bus = await stack.enter_async_context(closing(build_bus(cfg.bus)))
        backends = await stack.enter_async_context(assembly.open_executor_backends(cfg))
        generator = await stack.enter_async_context(assembly.open_generator(cfg))
        processors = (
            assembly.llm_processor(bus, cfg, metrics, generator=generator),
            assembly.executor_processor(bus, cfg, metrics, backends=backends),
        )
        runs = [asyncio.create_task(p.run(), name=f"embedded-{p.name}") for p in processors]

        async def stop() -> None:
            await asyncio.gather(*(p.stop(grace_s=5.0) for p in processors))
            await asyncio.gather(*runs, return_exceptions=True)

        stack.push_async_callback(stop)
        yield Pipeline(cfg, bus, processors, metrics)


async def run_embedded(
    cfg: AppConfig, requests: list[ExecutionRequest],
    on_result: Callable[[ExecutionResult], None] | None = None,
) -> dict[str, ExecutionResult]:
    """Publish ``requests``, wait for one result each (by request id); ``on_result`` hears
    of each as it arrives."""
    async with running_pipeline(cfg) as pipeline, \
            closing(ResultFollower(pipeline.bus, pipeline.cfg.bus.hubs)) as follower:
        producer = RequestProducer(pipeline.bus.publisher(), pipeline.cfg.bus.hubs.requests)
        await producer.submit_many(requests)
        return await follower.wait_for([r.request_id for r in requests],
                                       timeout_s=deadline(pipeline.cfg, requests),
                                       on_result=on_result)
