"""``llmexec worker llm|executor``: one worker as a long-running service."""

from __future__ import annotations

import structlog

from llmexec import assembly, services
from llmexec.config import load_config
from pipeline.bus.factory import build_bus
from pipeline.observability import tracing
from pipeline.observability.logging import configure_logging


async def worker_command(kind: str, port: int | None) -> int:
    cfg = load_config()
    configure_logging(cfg.log.log_level, cfg.log.log_format)
    tracing.configure_tracing(f"llmexec-{kind}")
    bus = build_bus(cfg.bus)
    if cfg.bus.backend == "memory":
        structlog.get_logger(__name__).warning(
            "bus.memory_only",
            hint="this worker sees only events published inside its own process; set "
                 "EVENT_HUB_CONNECTION_STRING and STORAGE_CONNECTION_STRING to share work",
        )
    try:
        if kind == "llm":
            await services.serve_llm(cfg, bus, port if port is not None else assembly.LLM_PORT)
        else:
            await services.serve_executor(cfg, bus,
                                          port if port is not None else assembly.EXECUTOR_PORT)
    finally:
        tracing.shutdown_tracing()  # flush the spans still buffered
    return 0
