"""``llmexec worker llm|executor``: one worker as a long-running service."""

from __future__ import annotations

import structlog

from pipeline.bus.factory import build_bus
from pipeline.observability.logging import configure_logging
from pipeline.settings import load_config


async def worker_command(kind: str, port: int | None) -> int:
    cfg = load_config()
    configure_logging(cfg.log.log_level, cfg.log.log_format)
    bus = build_bus(cfg.bus)
    if cfg.bus.backend == "memory":
        structlog.get_logger(__name__).warning(
            "bus.memory_only",
            hint="this worker sees only events published inside its own process; set "
                 "EVENT_HUB_CONNECTION_STRING and STORAGE_CONNECTION_STRING to share work",
        )
    if kind == "llm":
        from llm_worker.service import DEFAULT_PORT, run_service

        await run_service(bus, cfg, port if port is not None else DEFAULT_PORT)
        return 0
    from executor_worker import service as executor

    # The sandbox starts with an empty environment of its own (a fresh interpreter), so
    # nothing this process has read, secrets included, reaches user code.
    sandboxes = await executor.start_sandboxes(cfg)
    await executor.run_service(bus, cfg, port if port is not None else executor.DEFAULT_PORT,
                               sandboxes)
    return 0
