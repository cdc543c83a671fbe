"""Run processors as a service: probes, metrics, signals and graceful shutdown.

SIGTERM/SIGINT stop receiving at once; in-flight events get ``SHUTDOWN_GRACE_S`` (keep it
below the pod's ``terminationGracePeriodSeconds``), then partitions checkpoint and close.
The resources the processors use (bus, sandbox, clients) belong to the caller, who closes
them after this returns (``llmexec.assembly`` composes them in one ``AsyncExitStack``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from pipeline.observability.http import ProbeServer
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor

log = structlog.get_logger(__name__)


async def serve(
    *,
    name: str,
    processors: Sequence[Processor],
    metrics: PipelineMetrics,
    port: int | None,
    health: Callable[[], dict[str, Any]],
    ready: Callable[[], tuple[bool, dict[str, Any]]],
    grace_s: float,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    probes = None
    if port is not None:
        probes = ProbeServer(registry=metrics.registry, health=health, ready=ready, port=port)
        await probes.start()
        log.info("service.listening", service=name, port=probes.port)
    runs = [asyncio.create_task(p.run(), name=f"{name}-{p.hub}") for p in processors]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *runs], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("service.processor_failed", error=repr(task.exception()))
        log.info("service.stopping", service=name, grace_s=grace_s)
        await asyncio.gather(*(p.stop(grace_s) for p in processors))
        await asyncio.gather(*runs, return_exceptions=True)
    finally:
        stopper.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if probes is not None:
            await probes.close()
        log.info("service.stopped", service=name)
