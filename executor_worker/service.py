"""Assemble the executor worker: sandboxes, handler, processor on the executions hub."""

from __future__ import annotations

from typing import Any

from executor_worker.handler import ExecutorWorker
from executor_worker.sandbox import Sandbox, SandboxSettings, build_sandbox
from pipeline.bus.ports import Bus
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from pipeline.service import serve
from pipeline.settings import AppConfig, load

DEFAULT_PORT = 8001
CONSUMER_GROUP = "executor-worker"


async def start_sandboxes(
    cfg: AppConfig, sandbox: SandboxSettings | None = None
) -> tuple[Sandbox, Sandbox]:
    """Start the light sandbox and the embedded heavy runner.

    The local heavy route runs in the same hardened sandbox as light work (only its limits
    differ), so asking for ``heavy`` is never a way around the light sandbox's layers.
    Raises SandboxUnavailable (a clear start-up failure) when the host falls short.
    """
    settings = sandbox or load(SandboxSettings)
    light = build_sandbox(settings)
    await light.start()
    heavy = build_sandbox(settings.model_copy(update={"concurrency": 1}))
    try:
        await heavy.start()
    except BaseException:
        await light.close()
        raise
    return light, heavy


def build_processor(bus: Bus, cfg: AppConfig, metrics: PipelineMetrics, *, light: Sandbox,
                    heavy: Sandbox | None, owner_id: str | None = None) -> Processor:
    hubs = cfg.bus.hubs
    worker = ExecutorWorker(hubs=hubs, light=light, heavy=heavy, settings=cfg.execution)
    return Processor(
        name="executor", bus=bus, hub=hubs.executions,
        consumer_group=cfg.service.consumer_group or CONSUMER_GROUP,
        handler=worker.handle, accepts=ExecutorWorker.ACCEPTS, deadletter_hub=hubs.deadletter,
        settings=cfg.processor, metrics=metrics, owner_id=owner_id,
    )


async def run_service(bus: Bus, cfg: AppConfig, port: int | None,
                      sandboxes: tuple[Sandbox, Sandbox]) -> None:
    metrics = PipelineMetrics()
    light, heavy = sandboxes
    processor = build_processor(bus, cfg, metrics, light=light, heavy=heavy)

    def health() -> dict[str, Any]:
        return {"service": "executor", "bus": cfg.bus.backend,
                "sandbox": {"layers": list(light.layers()), "ready": light.ready(),
                            "missing": light.notes()}}

    def ready() -> tuple[bool, dict[str, Any]]:
        ok = bus.connected() and light.ready()
        return ok, {"bus_connected": bus.connected(), "sandbox_ready": light.ready(),
                    "partitions": sorted(processor.owned_partitions())}

    await serve(name="executor", bus=bus, processors=[processor], metrics=metrics, port=port,
                health=health, ready=ready, grace_s=cfg.processor.shutdown_grace_s,
                on_close=[light.close, heavy.close])
