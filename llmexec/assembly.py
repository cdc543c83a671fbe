"""The one place that wires settings, buses, workers and services together.

Workers export handlers (``LlmWorker``, ``ExecutorWorker``) and their resources; this
module builds them from one :class:`~llmexec.config.AppConfig`, puts each handler on a
processor, and composes every resource with an ``AsyncExitStack`` so whatever was opened
is closed, in reverse order, however a run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from executor_worker.handler import ExecutorWorker
from executor_worker.heavy.factory import build_job_runner
from executor_worker.heavy.reconciler import Reconciler
from executor_worker.heavy.runner import JobRunner
from executor_worker.observe import ExecutorMetrics
from executor_worker.sandbox import Sandbox, build_sandbox
from llm_worker.generator import CodeGenerator
from llm_worker.handler import LlmWorker
from llm_worker.metrics import LlmMetrics
from llmexec.config import AppConfig
from pipeline.bus.ports import Bus
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from pipeline.resources import closing, started

LLM_PORT, EXECUTOR_PORT = 8000, 8001
LLM_GROUP, EXECUTOR_GROUP = "llm-worker", "executor-worker"


@dataclass(frozen=True)
class Metrics:
    """The metric families of one process, on one registry (a registry refuses the same
    names twice, so each family is created exactly once, here)."""

    pipeline: PipelineMetrics
    llm: LlmMetrics
    executor: ExecutorMetrics

    @classmethod
    def create(cls) -> Metrics:
        pipeline = PipelineMetrics()
        return cls(pipeline, LlmMetrics(pipeline.registry), ExecutorMetrics(pipeline.registry))


@dataclass(frozen=True)
class ExecutorBackends:
    light: Sandbox
    heavy: JobRunner


# -- resources ---------------------------------------------------------------------------

@asynccontextmanager
async def open_generator(cfg: AppConfig) -> AsyncIterator[CodeGenerator | None]:
    """The Anthropic generator when a key is configured; None makes prompt requests fail
    with a clear "LLM not configured" result."""
    if cfg.llm.llm_api_key is None:
        yield None
        return
    from llm_worker.anthropic_client import AnthropicGenerator  # the SDK only when used

    async with closing(AnthropicGenerator(cfg.llm, cfg.execution)) as generator:
        yield generator


@asynccontextmanager
async def open_executor_backends(cfg: AppConfig) -> AsyncIterator[ExecutorBackends]:
    """The light sandbox and the heavy job runner, started. The sandbox starts with an
    empty environment of its own (a fresh interpreter), so nothing this process has read,
    secrets included, reaches user code. Raises SandboxRefused (a one-line start-up
    failure) when the host falls short of ``SANDBOX_LEVEL``."""
    async with AsyncExitStack() as stack:
        light = await stack.enter_async_context(started(build_sandbox(cfg.sandbox)))
        heavy = await stack.enter_async_context(
            started(build_job_runner(cfg.execution, cfg.sandbox)))
        yield ExecutorBackends(light, heavy)


@asynccontextmanager
async def reconciling(backends: ExecutorBackends, bus: Bus,
                      cfg: AppConfig) -> AsyncIterator[Reconciler]:
    """Publishes what detached heavy jobs finished, whoever submitted them (a restart loses
    nothing: the Jobs themselves are the record). Ends at once for the local runner."""
    reconciler = Reconciler(backends.heavy, bus.publisher(), cfg.bus.hubs)
    task = asyncio.create_task(reconciler.run(), name="executor-reconciler")
    try:
        yield reconciler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- processors --------------------------------------------------------------------------

def llm_processor(bus: Bus, cfg: AppConfig, metrics: Metrics, *,
                  generator: CodeGenerator | None, owner_id: str | None = None) -> Processor:
    hubs = cfg.bus.hubs
    worker = LlmWorker(hubs=hubs, generator=generator, llm=cfg.llm, execution=cfg.execution,
                       metrics=metrics.llm)
    return Processor(
        name="llm", bus=bus, hub=hubs.requests,
        consumer_group=cfg.service.consumer_group or LLM_GROUP,
        handler=worker.handle, accepts=LlmWorker.ACCEPTS, deadletter_hub=hubs.deadletter,
        settings=cfg.processor, metrics=metrics.pipeline, owner_id=owner_id,
    )


def executor_processor(bus: Bus, cfg: AppConfig, metrics: Metrics, *,
                       backends: ExecutorBackends, owner_id: str | None = None) -> Processor:
    hubs = cfg.bus.hubs
    metrics.executor.sandbox_layers(backends.light.layers(), backends.light.notes())
    worker = ExecutorWorker(hubs=hubs, light=backends.light, heavy=backends.heavy,
                            settings=cfg.execution, metrics=metrics.executor)
    return Processor(
        name="executor", bus=bus, hub=hubs.executions,
        consumer_group=cfg.service.consumer_group or EXECUTOR_GROUP,
        handler=worker.handle, accepts=ExecutorWorker.ACCEPTS, deadletter_hub=hubs.deadletter,
        settings=cfg.processor, metrics=metrics.pipeline, owner_id=owner_id,
    )


# -- probes ------------------------------------------------------------------------------

def llm_probes(cfg: AppConfig, bus: Bus, processor: Processor,
               generator: CodeGenerator | None) -> tuple[Any, Any]:
    def health() -> dict[str, Any]:
        return {"service": "llm", "bus": cfg.bus.backend, "llm_configured": generator is not None,
                "model": cfg.llm.llm_model, "llm_max_concurrency": cfg.llm.llm_max_concurrency}

    def ready() -> tuple[bool, dict[str, Any]]:
        stuck = processor.stuck_detail()
        return bus.connected() and not stuck, {
            "bus_connected": bus.connected(), "stuck": stuck,
            "partitions": sorted(processor.owned_partitions())}

    return health, ready


def executor_probes(cfg: AppConfig, bus: Bus, processor: Processor,
                    backends: ExecutorBackends) -> tuple[Any, Any]:
    light, heavy = backends.light, backends.heavy

    def health() -> dict[str, Any]:
        return {"service": "executor", "bus": cfg.bus.backend,
                "sandbox": {"layers": list(light.layers()), "ready": light.ready(),
                            "missing": light.notes()},
                "heavy": heavy.describe()}

    def ready() -> tuple[bool, dict[str, Any]]:
        stuck = processor.stuck_detail()
        ok = bus.connected() and light.ready() and heavy.ready() and not stuck
        return ok, {"bus_connected": bus.connected(), "sandbox_ready": light.ready(),
                    "heavy_ready": heavy.ready(), "stuck": stuck,
                    "partitions": sorted(processor.owned_partitions())}

    return health, ready
