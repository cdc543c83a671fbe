"""Helpers for the LLM worker's tests: configuration pointing at the fake Anthropic server,
and a worker driven directly (one handler call at a time, as the processor would)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from executor_worker.settings import ExecutorSettings
from llm_worker.anthropic_client import AnthropicGenerator
from llm_worker.handler import LlmWorker
from llm_worker.metrics import LlmMetrics
from llm_worker.settings import LlmSettings
from llmexec.config import AppConfig
from pipeline.bus.settings import BusSettings
from pipeline.handling import Emit, EventContext
from pipeline.settings import ProcessorSettings
from schemas import Event


def llm_config(base_url: str | None, *, api_key: str | None = "test-key",
               processor: dict[str, Any] | None = None, llm: dict[str, Any] | None = None,
               execution: dict[str, Any] | None = None, partitions: int = 4) -> AppConfig:
    """Settings built directly (never from the environment), with fast retries."""
    proc = {"transient_retries": 3, "retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05,
            "checkpoint_interval_s": 0.2, "shutdown_grace_s": 5.0, **(processor or {})}
    llm_fields: dict[str, Any] = {"max_retries": 3, "llm_api_key": api_key, "anthropic_base_url": base_url,
                                  "llm_timeout_s": 10.0, **(llm or {})}
    return AppConfig.build(
        bus=BusSettings(memory_partitions=partitions),
        processor=ProcessorSettings(**proc),
        execution=ExecutorSettings(**{"execution_timeout": 10, **(execution or {})}),
        llm=LlmSettings(**llm_fields),
    )


class WorkerHarness:
    """An LlmWorker with the real Anthropic adapter, called like the processor calls it."""

    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.registry = CollectorRegistry()
        self.metrics = LlmMetrics(self.registry)
        self.generator = AnthropicGenerator(cfg.llm, cfg.execution)
        self.worker = LlmWorker(hubs=cfg.bus.hubs, generator=self.generator, llm=cfg.llm,
                                execution=cfg.execution, metrics=self.metrics)
        self.last_try = cfg.processor.transient_retries + 1

    async def handle(self, event: Event, *, try_number: int = 1) -> Sequence[Emit]:
        ctx = EventContext(hub="requests", consumer_group="llm-worker", partition_id="0",
                           offset="0", sequence_number=0, enqueued_time=datetime.now(UTC),
                           try_number=try_number, final_try=try_number >= self.last_try)
        return await self.worker.handle(event, ctx)

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def close(self) -> None:
        await self.generator.close()
