"""Assemble the LLM worker: generator, handler, processor on the requests hub."""

from __future__ import annotations

import weakref
from typing import Any

from prometheus_client import CollectorRegistry

from llm_worker.generator import CodeGenerator
from llm_worker.handler import LlmWorker
from llm_worker.metrics import LlmMetrics
from pipeline.bus.ports import Bus
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from pipeline.service import serve
from pipeline.settings import AppConfig

DEFAULT_PORT = 8000
CONSUMER_GROUP = "llm-worker"

# One LlmMetrics per registry: a registry refuses the same metric names twice, and several
# processors (tests, the embedded run) may be built on one PipelineMetrics.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, LlmMetrics] = weakref.WeakKeyDictionary()


def llm_metrics(registry: CollectorRegistry) -> LlmMetrics:
    found = _METRICS.get(registry)
    if found is None:
        found = _METRICS[registry] = LlmMetrics(registry)
    return found


def default_generator(cfg: AppConfig) -> CodeGenerator | None:
    """The Anthropic generator when a key is configured; None makes prompt requests fail
    with a clear "LLM not configured" result."""
    if cfg.llm.llm_api_key is None:
        return None
    from llm_worker.anthropic_client import AnthropicGenerator  # the SDK only when used

    return AnthropicGenerator(cfg.llm, cfg.execution)


def build_worker(cfg: AppConfig, metrics: PipelineMetrics, *,
                 generator: CodeGenerator | None) -> LlmWorker:
    return LlmWorker(hubs=cfg.bus.hubs, generator=generator, llm=cfg.llm,
                     execution=cfg.execution, max_retries=cfg.processor.max_retries,
                     handler_tries=cfg.processor.max_retries + 1,
                     metrics=llm_metrics(metrics.registry))


def build_processor(bus: Bus, cfg: AppConfig, metrics: PipelineMetrics, *,
                    generator: CodeGenerator | None, owner_id: str | None = None) -> Processor:
    hubs = cfg.bus.hubs
    worker = build_worker(cfg, metrics, generator=generator)
    return Processor(
        name="llm", bus=bus, hub=hubs.requests,
        consumer_group=cfg.service.consumer_group or CONSUMER_GROUP,
        handler=worker.handle, accepts=LlmWorker.ACCEPTS, deadletter_hub=hubs.deadletter,
        settings=cfg.processor, metrics=metrics, owner_id=owner_id,
    )


async def run_service(bus: Bus, cfg: AppConfig, port: int | None) -> None:
    metrics = PipelineMetrics()
    generator = default_generator(cfg)
    processor = build_processor(bus, cfg, metrics, generator=generator)

    def health() -> dict[str, Any]:
        return {"service": "llm", "bus": cfg.bus.backend, "llm_configured": generator is not None,
                "model": cfg.llm.llm_model, "llm_max_concurrency": cfg.llm.llm_max_concurrency}

    def ready() -> tuple[bool, dict[str, Any]]:
        return bus.connected(), {"bus_connected": bus.connected(),
                                 "partitions": sorted(processor.owned_partitions())}

    closers = [generator.close] if generator is not None else []
    await serve(name="llm", bus=bus, processors=[processor], metrics=metrics, port=port,
                health=health, ready=ready, grace_s=cfg.processor.shutdown_grace_s,
                on_close=closers)
