"""Each worker as a long-running service: its resources, its processor, its probes."""

from __future__ import annotations

from contextlib import AsyncExitStack

from llmexec import assembly
from llmexec.config import AppConfig
from pipeline.bus.ports import Bus
from pipeline.resources import closing
from pipeline.service import serve


async def serve_llm(cfg: AppConfig, bus: Bus, port: int | None) -> None:
    metrics = assembly.Metrics.create()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(closing(bus))
        generator = await stack.enter_async_context(assembly.open_generator(cfg))
        processor = assembly.llm_processor(bus, cfg, metrics, generator=generator)
        health, ready = assembly.llm_probes(cfg, bus, processor, generator)
        await serve(name="llm", processors=[processor], metrics=metrics.pipeline, port=port,
                    health=health, ready=ready, grace_s=cfg.processor.shutdown_grace_s)


async def serve_executor(cfg: AppConfig, bus: Bus, port: int | None) -> None:
    metrics = assembly.Metrics.create()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(closing(bus))
        backends = await stack.enter_async_context(assembly.open_executor_backends(cfg))
        processor = assembly.executor_processor(bus, cfg, metrics, backends=backends)
        await stack.enter_async_context(assembly.reconciling(backends, bus, cfg))
        health, ready = assembly.executor_probes(cfg, bus, processor, backends)
        await serve(name="executor", processors=[processor], metrics=metrics.pipeline,
                    port=port, health=health, ready=ready,
                    grace_s=cfg.processor.shutdown_grace_s)
