"""``llmexec run``: requests through the whole pipeline in one process, embedded backends.

Memory bus, both workers on the real processor, a result follower; every request is
answered exactly once (a request that cannot even be read gets a ``rejected`` result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from pydantic import ValidationError

from consumers.results import ResultFollower
from executor_worker import service as executor_service
from llm_worker import service as llm_service
from pipeline.bus.factory import build_bus
from pipeline.observability.logging import configure_logging
from pipeline.observability.metrics import PipelineMetrics
from pipeline.settings import AppConfig, load_config
from producers.client import RequestProducer
from schemas import (
    DecodeError,
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    Limits,
    ResultStatus,
    Route,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Time the pipeline gets beyond the execution limits (LLM round trips, scheduling).
OVERHEAD_S = 120.0


async def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    cfg = load_config()
    level = cfg.log.log_level if "LOG_LEVEL" in os.environ else "WARNING"
    configure_logging(level, cfg.log.log_format)
    try:
        requests, early = _requests_from_args(args, parser)
    except _UsageError as exc:
        print(f"llmexec run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = await run_embedded(cfg, requests)
    answered = {**early, **results}
    order = [r.request_id for r in requests] + list(early)
    ordered = [answered[rid] for rid in dict.fromkeys(order) if rid in answered]
    for result in sorted(ordered, key=lambda r: _position(order, r.request_id)):
        _print_result(result, as_json=args.json)
    every_answered = len(ordered) == len(set(order))
    ok = every_answered and all(r.status is ResultStatus.SUCCEEDED for r in ordered)
    return EXIT_OK if ok else EXIT_FAILED


async def run_embedded(
    cfg: AppConfig, requests: list[ExecutionRequest]
) -> dict[str, ExecutionResult]:
    bus = build_bus(cfg.bus.model_copy(update={"event_hub_connection_string": None,
                                               "event_hub_namespace": None}))
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
                                       timeout_s=_deadline(cfg, requests))
    finally:
        await follower.close()
        await asyncio.gather(*(p.stop(grace_s=5.0) for p in processors))
        await asyncio.gather(*runs, return_exceptions=True)
        await light.close()
        await heavy.close()
        if generator is not None:
            await generator.close()
        await bus.close()


def _deadline(cfg: AppConfig, requests: list[ExecutionRequest]) -> float:
    per_try = max((r.limits.timeout_s or cfg.execution.execution_timeout) for r in requests)
    waves = -(-len(requests) // cfg.processor.max_concurrency)
    return (per_try + OVERHEAD_S) * (cfg.processor.max_retries + 1) * max(1, waves)


class _UsageError(Exception):
    pass


def _requests_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[list[ExecutionRequest], dict[str, ExecutionResult]]:
    if args.requests is not None:
        if args.prompt:
            raise _UsageError("give either PROMPT or --requests, not both")
        return _requests_from_file(args.requests)
    code = args.code
    if args.code_file is not None:
        try:
            code = args.code_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise _UsageError(
                f"cannot read --code-file: {exc.strerror}: {args.code_file}"
            ) from None
    if code is not None and args.prompt:
        raise _UsageError("give either PROMPT or code, not both")
    if code is None and not args.prompt:
        raise _UsageError("nothing to run: give PROMPT, --code, --code-file or --requests")
    fields: dict[str, Any] = {"prompt": args.prompt, "code": code, "route": Route(args.route),
                              "limits": Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)}
    if args.inputs is not None:
        try:
            fields["inputs"] = json.loads(args.inputs)
        except json.JSONDecodeError as exc:
            raise _UsageError(f"--inputs is not JSON: {exc}") from None
    if args.request_id:
        fields["request_id"] = args.request_id
    try:
        return [ExecutionRequest(**fields)], {}
    except ValidationError as exc:
        raise _UsageError(str(DecodeError(exc.errors()[0]["msg"]))) from None


def _requests_from_file(path: Any) -> tuple[list[ExecutionRequest], dict[str, ExecutionResult]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise _UsageError(f"cannot read --requests: {exc.strerror}: {path}") from None
    requests: list[ExecutionRequest] = []
    rejected: dict[str, ExecutionResult] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        raw: Any = None
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
            requests.append(ExecutionRequest.model_validate({**raw, "kind": "request"}))
        except (ValueError, ValidationError) as exc:
            rid = raw.get("request_id") if isinstance(raw, dict) else None
            rid = rid if isinstance(rid, str) and rid else f"line-{number}"
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            rejected[rid] = ExecutionResult(
                request_id=rid, attempt=0, status=ResultStatus.REJECTED,
                error=ErrorInfo(code="invalid_request", message=f"line {number}: {message}"),
            )
    return requests, rejected


def _position(order: list[str], request_id: str) -> int:
    return order.index(request_id) if request_id in order else len(order)


def _print_result(result: ExecutionResult, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stderr.write(result.stderr)
    if result.status is not ResultStatus.SUCCEEDED:
        reason = result.error.message if result.error else ""
        print(f"[{result.request_id}] {result.status.value}: {reason}", file=sys.stderr)
    sys.stdout.flush()
