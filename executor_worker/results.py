"""Result assembly: the events one finished attempt becomes, whoever ran it (the handler
for inline work, the reconciler for detached heavy Jobs)."""

from __future__ import annotations

from executor_worker.sandbox import SandboxJob, SandboxOutcome
from executor_worker.settings import ExecutorSettings
from pipeline.handling import Emit
from schemas import (
    AttemptRecord,
    ErrorInfo,
    ExecRoute,
    ExecutionCommand,
    ExecutionResult,
    HubNames,
    RepairRequest,
    ResultStatus,
    derived_id,
)


def emits_for(hubs: HubNames, cmd: ExecutionCommand, result: ExecutionResult) -> list[Emit]:
    """The events for one finished attempt: a repair request or the final result."""
    # The LLM worker decides whether to try again or give up (and says why in the final
    # result); a big failure travels by claim check, so nothing is trimmed here.
    can_repair = (cmd.source == "llm" or cmd.allow_rewrite) and bool(cmd.prompt)
    if result.status in (ResultStatus.FAILED, ResultStatus.TIMED_OUT) and can_repair:
        return [Emit(hubs.requests,
                     RepairRequest(request_id=cmd.request_id, command=cmd, failure=result))]
    return [Emit(hubs.results, result)]


def sandbox_job(cmd: ExecutionCommand, s: ExecutorSettings) -> SandboxJob:
    """The command's limits, capped by its route's maxima."""
    light = cmd.route is ExecRoute.LIGHT
    max_timeout = s.execution_timeout if light else s.heavy_job_timeout
    max_memory = s.execution_memory_mb if light else s.heavy_job_memory_mb
    return SandboxJob(
        job_id=derived_id("job", cmd.request_id, cmd.attempt),
        code=cmd.code,
        inputs=cmd.inputs,
        timeout_s=min(cmd.limits.timeout_s or max_timeout, max_timeout),
        memory_mb=min(cmd.limits.memory_mb or max_memory, max_memory),
        max_output_bytes=s.max_output_bytes,
    )


def outcome_result(cmd: ExecutionCommand, outcome: SandboxOutcome) -> ExecutionResult:
    status = ResultStatus(outcome.status)
    error = None if status is ResultStatus.SUCCEEDED else ErrorInfo(
        code=outcome.reason_code or "failed",
        message=outcome.reason or status.value,
        details={"signal": outcome.signal} if outcome.signal else {},
    )
    return _result(cmd, outcome, status, error)


def failure_result(cmd: ExecutionCommand, code: str, message: str) -> ExecutionResult:
    return _result(cmd, None, ResultStatus.FAILED, ErrorInfo(code=code, message=message))


def _result(cmd: ExecutionCommand, outcome: SandboxOutcome | None,
            status: ResultStatus, error: ErrorInfo | None) -> ExecutionResult:
    record = AttemptRecord(attempt=cmd.attempt, code=cmd.code, source=cmd.source,
                           validation=cmd.validation, status=status, error=error,
                           usage=cmd.usage)
    o = outcome
    return ExecutionResult(
        request_id=cmd.request_id, attempt=cmd.attempt, status=status,
        exit_code=o.exit_code if o else None,
        stdout=o.stdout if o else "", stderr=o.stderr if o else "",
        stdout_truncated=o.stdout_truncated if o else False,
        stderr_truncated=o.stderr_truncated if o else False,
        duration_ms=o.duration_ms if o else 0.0,
        route=cmd.route, attempts=[*cmd.history, record], code=cmd.code, error=error,
        artifacts=o.artifacts if o else [], sandbox=list(o.layers) if o else [],
        metadata=cmd.metadata,
    )
