"""Requests -> execution commands: validate or generate the code, route it, repair it.

A request with ``code`` is validated (never rewritten unless it allows it) and routed. A
request with a ``prompt`` is written by the code generator; without one configured it gets
a clear ``failed`` result. A ``RepairRequest`` (an LLM-written attempt that failed at run
time) goes back to the generator with the error, until ``MAX_RETRIES`` attempts are spent.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from llm_worker.generator import CodeGenerator
from llm_worker.routing import resolve_route
from llm_worker.validation import describe, validate_code
from pipeline.errors import PermanentError
from pipeline.handling import Emit, EventContext
from pipeline.settings import ExecutionSettings, LlmSettings
from schemas import (
    AttemptRecord,
    ErrorInfo,
    Event,
    ExecutionCommand,
    ExecutionRequest,
    ExecutionResult,
    HubNames,
    RepairRequest,
    ResultStatus,
)

log = structlog.get_logger(__name__)

LLM_NOT_CONFIGURED = (
    "LLM not configured: set LLM_API_KEY or ANTHROPIC_API_KEY to run prompt requests "
    "(requests that carry code run without it)"
)


class LlmWorker:
    ACCEPTS = frozenset({"request", "repair"})

    def __init__(
        self,
        *,
        hubs: HubNames,
        generator: CodeGenerator | None,
        llm: LlmSettings,
        execution: ExecutionSettings,
        max_retries: int,
    ) -> None:
        self._hubs = hubs
        self._generator = generator
        self._llm = llm
        self._execution = execution
        self._max_attempts = max(1, max_retries)

    async def handle(self, event: Event, ctx: EventContext) -> Sequence[Emit]:
        if isinstance(event, ExecutionRequest):
            return [await self._on_request(event)]
        if isinstance(event, RepairRequest):
            return [await self._on_repair(event)]
        raise PermanentError(f"llm worker cannot handle {event.kind!r} events")

    async def _on_request(self, req: ExecutionRequest) -> Emit:
        if req.code and req.code.strip():
            return self._check_and_route(req, req.code, attempt=1, source="user", history=[])
        if self._generator is None:
            return self._final(req.request_id, 0, ResultStatus.FAILED,
                               ErrorInfo(code="llm_not_configured", message=LLM_NOT_CONFIGURED),
                               history=[], code=None, metadata=req.metadata)
        return await self._generate(req, history=[], attempt=1)

    async def _on_repair(self, rep: RepairRequest) -> Emit:
        cmd = rep.command
        history = [*cmd.history, *rep.failure.attempts[-1:]]
        if self._generator is None or cmd.attempt >= self._max_attempts:
            why = ("no LLM configured to repair it" if self._generator is None
                   else f"gave up after {cmd.attempt} attempts (MAX_RETRIES={self._max_attempts})")
            return Emit(self._hubs.results, rep.failure.model_copy(update={
                "error": ErrorInfo(
                    code=rep.failure.error.code if rep.failure.error else "failed",
                    message=f"{rep.failure.error.message if rep.failure.error else 'failed'}; {why}",
                ),
            }))
        if not cmd.prompt:
            raise PermanentError("repair requested for an attempt that has no prompt")
        req = ExecutionRequest(
            request_id=cmd.request_id, prompt=cmd.prompt, inputs=cmd.inputs,
            limits=cmd.limits, route=cmd.requested_route, metadata=cmd.metadata,
        )
        return await self._generate(req, history=history, attempt=cmd.attempt + 1)

    async def _generate(self, req: ExecutionRequest, *, history: list[AttemptRecord],
                        attempt: int) -> Emit:
        assert self._generator is not None and req.prompt
        while True:
            try:
                gen = await self._generator.generate(req.prompt, inputs=req.inputs,
                                                     history=history)
            except PermanentError as exc:
                return self._final(req.request_id, attempt, ResultStatus.FAILED,
                                   ErrorInfo(code="llm_error", message=str(exc)),
                                   history=history, code=None, metadata=req.metadata)
            report = validate_code(gen.code, max_bytes=self._llm.max_code_bytes)
            if report.ok or attempt >= self._max_attempts:
                return self._check_and_route(req, gen.code, attempt=attempt, source="llm",
                                             history=history, hint=gen.route_hint,
                                             usage=gen.usage)
            history = [*history, AttemptRecord(
                attempt=attempt, code=gen.code, source="llm", validation=report,
                status=ResultStatus.REJECTED, usage=gen.usage,
                error=ErrorInfo(code="validation_failed", message=describe(report)),
            )]
            attempt += 1

    def _check_and_route(self, req: ExecutionRequest, code: str, *, attempt: int,
                         source: str, history: list[AttemptRecord], hint: object = None,
                         usage: object = None) -> Emit:
        report = validate_code(code, max_bytes=self._llm.max_code_bytes)
        if not report.ok:
            record = AttemptRecord(attempt=attempt, code=code, source=source,  # type: ignore[arg-type]
                                   validation=report, status=ResultStatus.REJECTED,
                                   error=ErrorInfo(code="validation_failed",
                                                   message=describe(report)))
            return self._final(req.request_id, attempt, ResultStatus.REJECTED, record.error,
                               history=[*history, record], code=code, metadata=req.metadata)
        route, reason = resolve_route(req, hint, self._execution)
        return Emit(self._hubs.executions, ExecutionCommand(
            request_id=req.request_id, attempt=attempt, code=code, route=route,
            route_reason=reason, requested_route=req.route, limits=req.limits, inputs=req.inputs, source=source,
            prompt=req.prompt, allow_rewrite=req.allow_rewrite, validation=report,
            usage=usage, history=history, metadata=req.metadata,
        ))

    def _final(self, request_id: str, attempt: int, status: ResultStatus,
               error: ErrorInfo | None, *, history: list[AttemptRecord], code: str | None,
               metadata: dict[str, object]) -> Emit:
        return Emit(self._hubs.results, ExecutionResult(
            request_id=request_id, attempt=attempt, status=status, error=error,
            attempts=history, code=code, metadata=metadata,
        ))
