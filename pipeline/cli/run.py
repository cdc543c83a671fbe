"""``llmexec run``: requests through the whole pipeline in one process, embedded backends.

Memory bus, both workers on the real processor, a result follower; every request is
answered exactly once (a request that cannot even be read gets a ``rejected`` result).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os

from consumers.results import ResultFollower
from executor_worker import service as executor_service
from llm_worker import service as llm_service
from pipeline.bus.factory import build_bus
from pipeline.cli.common import deadline, report, requests_from_args
from pipeline.observability.logging import configure_logging
from pipeline.observability.metrics import PipelineMetrics
from pipeline.settings import AppConfig, load_config
from producers.client import RequestProducer
from schemas import ExecutionRequest, ExecutionResult


async def run_command(args: argparse.Namespace) -> int:
    cfg = load_config()
    level = cfg.log.log_level if "LOG_LEVEL" in os.environ else "WARNING"
    configure_logging(level, cfg.log.log_format)
    requests, early = requests_from_args(args)
    results = await run_embedded(cfg, requests)
    return report(requests, early, results, as_json=args.json)


def embedded(cfg: AppConfig) -> AppConfig:
    """The same configuration on the embedded backends: memory bus, local heavy runner."""
    return dataclasses.replace(
        cfg,
        bus=cfg.bus.model_copy(update={"event_hub_connection_string": None,
                                       "event_hub_namespace": None}),
        execution=cfg.execution.model_copy(update={"heavy_runner": "local"}),
    )


async def run_embedded(
    cfg: AppConfig, requests: list[ExecutionRequest]
) -> dict[str, ExecutionResult]:
    cfg = embedded(cfg)
    bus = build_bus(cfg.bus)
    hubs = cfg.bus.hubs
    metrics = PipelineMetrics()
    light, heavy = await executor_service.start_sandboxes(cfg)
    generator = llm_service.default_generator(cfg)
    processors = [
        llm_service.build_processor(bus, cfg, metrics, generator=generator),
        executor_service.build_processor(bus, cfg, metrics, light=light, heavy=heavy),
    ]
    runs = [asyncio.create_task(p.run()) for p in processors]
    follower = ResultFollower(bus, hubs)
    producer = RequestProducer(bus.publisher(), hubs.requests)
    try:
        await producer.submit_many(requests)
        return await follower.wait_for([r.request_id for r in requests],
                                       timeout_s=deadline(cfg, requests))
    finally:
        await follower.close()
        await asyncio.gather(*(p.stop(grace_s=5.0) for p in processors))
        await asyncio.gather(*runs, return_exceptions=True)
        await light.close()
        await heavy.close()
        if generator is not None:
            await generator.close()
        await bus.close()


