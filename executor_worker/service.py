"""Assemble the executor worker: sandbox, heavy runner, handler, processor, reconciler."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from executor_worker.handler import ExecutorWorker
from executor_worker.heavy.local import LocalJobRunner
from executor_worker.heavy.reconciler import Reconciler
from executor_worker.heavy.runner import JobRunner
from executor_worker.sandbox import Sandbox, SandboxSettings, build_sandbox
from pipeline.bus.ports import Bus
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from pipeline.service import serve
from pipeline.settings import AppConfig, load

DEFAULT_PORT = 8001
CONSUMER_GROUP = "executor-worker"


def build_job_runner(cfg: AppConfig, sandbox: SandboxSettings) -> JobRunner:
    """The one place that picks the heavy runner (``HEAVY_RUNNER``)."""
    s = cfg.execution
    if s.heavy_runner == "kubernetes":
        # Imported here so the embedded default never loads the Kubernetes client.
        from executor_worker.heavy.kube import KubernetesJobRunner

        return KubernetesJobRunner.from_settings(s)
    return LocalJobRunner(sandbox, start_grace_s=float(s.heavy_job_start_grace_s))


async def start_sandboxes(
    cfg: AppConfig, sandbox: SandboxSettings | None = None
) -> tuple[Sandbox, JobRunner]:
    """Start the light sandbox and the heavy job runner.

    The local heavy runner runs the heavy-executor entrypoint with the same sandbox settings
    as light work (only its limits differ), so asking for ``heavy`` is never a way around the
    light sandbox's layers. Raises SandboxUnavailable (a clear start-up failure) when the
    host falls short.
    """
    settings = sandbox or load(SandboxSettings)
    light = build_sandbox(settings)
    await light.start()
    heavy = build_job_runner(cfg, settings)
    try:
        await heavy.start()
    except BaseException:
        await light.close()
        raise
    return light, heavy


def build_processor(bus: Bus, cfg: AppConfig, metrics: PipelineMetrics, *, light: Sandbox,
                    heavy: JobRunner | None, owner_id: str | None = None) -> Processor:
    hubs = cfg.bus.hubs
    worker = ExecutorWorker(hubs=hubs, light=light, heavy=heavy, settings=cfg.execution)
    return Processor(
        name="executor", bus=bus, hub=hubs.executions,
        consumer_group=cfg.service.consumer_group or CONSUMER_GROUP,
        handler=worker.handle, accepts=ExecutorWorker.ACCEPTS, deadletter_hub=hubs.deadletter,
        settings=cfg.processor, metrics=metrics, owner_id=owner_id,
    )


async def run_service(bus: Bus, cfg: AppConfig, port: int | None,
                      sandboxes: tuple[Sandbox, JobRunner]) -> None:
    metrics = PipelineMetrics()
    light, heavy = sandboxes
    processor = build_processor(bus, cfg, metrics, light=light, heavy=heavy)
    # Publishes what detached heavy jobs finished, whoever submitted them (a restart loses
    # nothing: the Jobs themselves are the record). Ends at once for the local runner.
    reconciler = Reconciler(heavy, bus.publisher(), cfg.bus.hubs)
    reconciling = asyncio.create_task(reconciler.run(), name="executor-reconciler")

    async def stop_reconciler() -> None:
        await heavy.close()
        reconciling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reconciling

    def health() -> dict[str, Any]:
        return {"service": "executor", "bus": cfg.bus.backend,
                "sandbox": {"layers": list(light.layers()), "ready": light.ready(),
                            "missing": light.notes()},
                "heavy": heavy.describe()}

    def ready() -> tuple[bool, dict[str, Any]]:
        ok = bus.connected() and light.ready() and heavy.ready()
        return ok, {"bus_connected": bus.connected(), "sandbox_ready": light.ready(),
                    "heavy_ready": heavy.ready(),
                    "partitions": sorted(processor.owned_partitions())}

    await serve(name="executor", bus=bus, processors=[processor], metrics=metrics, port=port,
                health=health, ready=ready, grace_s=cfg.processor.shutdown_grace_s,
                on_close=[light.close, stop_reconciler])
