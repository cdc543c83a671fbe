"""Requests -> execution commands: validate or write the code, repair it, route it.

- A request with ``code`` is validated and routed; it is never rewritten unless it sets
  ``allow_rewrite`` (then a failing program goes to the model like generated code does).
- A request with a ``prompt`` is written by the model; code that fails validation goes back
  to the model with its report, in this handler call, until it passes or ``MAX_RETRIES``
  attempts are spent. Without a model configured the request gets a clear ``failed`` result.
- A ``RepairRequest`` (the executor's result for an attempt that failed at run time) goes
  back to the model with the traceback and the previous code, as the next attempt.

Every attempt is an :class:`AttemptRecord` that travels in the events and ends in the final
result. The model call may be throttled or fail: transient errors are raised for the
processor to retry, except on its last try (``EventContext.final_try``), where they
become a final ``failed`` result, so a request always gets an answer, not only a dead
letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog
from pydantic import JsonValue

from llm_worker import spans
from llm_worker.attempts import Progress, ProgressCache, runtime_failure_record
from llm_worker.generator import CodeGenerator, Generation, GenerationTask
from llm_worker.metrics import LlmMetrics
from llm_worker.packages import with_detected_packages
from llm_worker.routing import resolve_route
from llm_worker.settings import LlmSettings
from llm_worker.validation import CodeCheck, Policy, describe, validate_code
from pipeline.errors import PermanentError, TransientError
from pipeline.handling import Emit, EventContext
from pipeline.settings import ExecutionSettings
from schemas import (
    AttemptRecord,
    ErrorInfo,
    Event,
    ExecutionCommand,
    ExecutionRequest,
    ExecutionResult,
    HubNames,
    Limits,
    RepairRequest,
    ResultStatus,
    Route,
)
from schemas.base import Metadata

log = structlog.get_logger(__name__)

LLM_NOT_CONFIGURED = (
    "LLM not configured: set LLM_API_KEY or ANTHROPIC_API_KEY to run prompt requests "
    "(requests that carry code run without it)"
)
#: The task given to the model for user code that may be rewritten but came without a prompt.
REWRITE_TASK = ("Make the user's program (attempt 1 below) work in this environment. Keep "
                "what it computes and prints; change only what is needed.")


@dataclass(frozen=True)
class _Job:
    """What the model is writing code for, and what the command will carry."""

    request_id: str
    prompt: str
    inputs: JsonValue
    limits: Limits
    route: Route
    allow_rewrite: bool
    metadata: Metadata


class LlmWorker:
    ACCEPTS = frozenset({"request", "repair"})

    def __init__(self, *, hubs: HubNames, generator: CodeGenerator | None, llm: LlmSettings,
                 execution: ExecutionSettings, metrics: LlmMetrics | None = None) -> None:
        self._hubs = hubs
        self._generator = generator
        self._llm = llm = with_detected_packages(llm)
        self._execution = execution
        self._max_retries = llm.max_retries
        self._max_attempts = llm.max_attempts
        self._metrics = metrics or LlmMetrics()
        self._slots = asyncio.Semaphore(llm.llm_max_concurrency)
        self._progress = ProgressCache()

    async def handle(self, event: Event, ctx: EventContext) -> Sequence[Emit]:
        if isinstance(event, ExecutionRequest):
            return [await self._on_request(event, ctx)]
        if isinstance(event, RepairRequest):
            return [await self._on_repair(event, ctx)]
        raise PermanentError(f"llm worker cannot handle {event.kind!r} events")

    # -- the three ways in ---------------------------------------------------------------

    async def _on_request(self, req: ExecutionRequest, ctx: EventContext) -> Emit:
        job = _Job(req.request_id, req.prompt or "", req.inputs, req.limits, req.route,
                   req.allow_rewrite, req.metadata)
        if req.code and req.code.strip():
            return await self._on_user_code(req.code, job, ctx)
        if self._generator is None:
            return self._final(job, 0, ResultStatus.FAILED,
                               ErrorInfo(code="llm_not_configured", message=LLM_NOT_CONFIGURED),
                               history=[])
        return await self._write(("request", job.request_id), job, 1, [], ctx)

    async def _on_user_code(self, code: str, job: _Job, ctx: EventContext) -> Emit:
        if job.allow_rewrite and not job.prompt:
            job = replace(job, prompt=REWRITE_TASK)  # so a run-time failure can be repaired
        with spans.validating("user") as checks:
            checks.append(check := validate_code(code, self._policy(job.route)))
        if check.report.ok:
            return self._command(job, 1, code, "user", check, None, [])
        self._metrics.count_validation(check.report, "user")
        record = _rejected(1, code, "user", check, None)
        if not (job.allow_rewrite and self._generator is not None and self._max_attempts > 1):
            return self._final(job, 1, ResultStatus.REJECTED, record.error, history=[record],
                               code=code)
        return await self._write(("request", job.request_id), job, 2, [record], ctx,
                                 repair="validation")

    async def _on_repair(self, rep: RepairRequest, ctx: EventContext) -> Emit:
        cmd, failure = rep.command, rep.failure
        history = [*cmd.history, runtime_failure_record(cmd, failure)]
        why = None
        if self._generator is None:
            why = "no LLM configured to repair it"
        elif cmd.attempt >= self._max_attempts:
            why = f"gave up after {cmd.attempt} attempts (MAX_RETRIES={self._max_retries})"
            self._metrics.gave_up.labels("attempts_exhausted").inc()
        elif not cmd.prompt:
            why = "the attempt has no task to repair it against"
        if why is not None:
            error = failure.error or ErrorInfo(code="failed", message=failure.status.value)
            return Emit(self._hubs.results, failure.model_copy(update={
                "attempts": history,
                "error": error.model_copy(update={"message": f"{error.message}; {why}"}),
            }))
        job = _Job(cmd.request_id, cmd.prompt or "", cmd.inputs, cmd.limits,
                   cmd.requested_route, cmd.allow_rewrite, cmd.metadata)
        return await self._write(("repair", cmd.request_id, cmd.attempt), job,
                                 cmd.attempt + 1, history, ctx, repair="runtime")

    # -- the repair loop -----------------------------------------------------------------

    async def _write(self, key: tuple[object, ...], job: _Job, attempt: int,
                     history: list[AttemptRecord], ctx: EventContext, *,
                     repair: str | None = None) -> Emit:
        """Generate, validate, feed failures back; one attempt per generated program."""
        progress = self._progress.get_or_start(key, attempt, history)
        if progress.outputs is not None:  # a duplicate of an event already answered here
            return progress.outputs[0]
        if repair and not progress.notes.get("counted"):
            progress.notes["counted"] = True
            self._metrics.repairs.labels(repair).inc()
        emit = await self._write_loop(job, progress, ctx, repair)
        progress.outputs = [emit]
        return emit

    async def _write_loop(self, job: _Job, progress: Progress, ctx: EventContext,
                          repair: str | None = None) -> Emit:
        policy = self._policy(job.route)
        history = progress.history  # appended in place: a retried call resumes from here
        while True:
            attempt = progress.attempt
            with spans.attempt(attempt, repair):  # one span per attempt
                emit = await self._one_attempt(job, progress, ctx, attempt, policy,
                                               history)
            if emit is not None:
                return emit
            repair = "validation"

    async def _one_attempt(self, job: _Job, progress: Progress, ctx: EventContext,
                           attempt: int, policy: Policy,
                           history: list[AttemptRecord]) -> Emit | None:
        """One generated program: its result, or None after a validation failure
        with attempts left (``progress.attempt`` moved to the next one)."""
        task = GenerationTask(prompt=job.prompt, inputs=job.inputs, history=list(history),
                              requested_route=job.route)
        try:
            gen = await self._call_model(task)
        except PermanentError as exc:
            self._metrics.gave_up.labels("llm_error").inc()
            return self._final(job, attempt, ResultStatus.FAILED,
                               ErrorInfo(code="llm_error", message=str(exc),
                                         details=_error_details(exc)), history=history)
        except TransientError as exc:
            if not ctx.final_try:
                raise  # the processor backs off (honouring retry-after) and tries again
            # On the processor's last try a transient failure becomes the request's
            # final result instead of a dead letter.
            # An API that kept failing, or a model that kept ignoring the tool.
            code = ("llm_bad_response" if getattr(exc, "error_class", "") == "malformed"
                    else "llm_unavailable")
            self._metrics.gave_up.labels(code).inc()
            return self._final(job, attempt, ResultStatus.FAILED, ErrorInfo(
                code=code,
                message=f"no usable LLM answer after {ctx.try_number} tries: {exc}",
                details=_error_details(exc)), history=history)
        with spans.validating("llm") as checks:
            checks.append(check := validate_code(gen.code, policy))
        if check.report.ok:
            return self._command(job, attempt, gen.code, "llm", check, gen, history)
        self._metrics.count_validation(check.report, "llm")
        history.append(_rejected(attempt, gen.code, "llm", check, gen))
        if attempt >= self._max_attempts:
            self._metrics.gave_up.labels("attempts_exhausted").inc()
            return self._final(job, attempt, ResultStatus.FAILED, ErrorInfo(
                code="validation_failed",
                message=f"no valid code after {attempt} attempts "
                        f"(MAX_RETRIES={self._max_retries}); last: "
                        f"{describe(check.report)}"), history=history, code=gen.code)
        self._metrics.repairs.labels("validation").inc()
        progress.attempt = attempt + 1
        return None

    async def _call_model(self, task: GenerationTask) -> Generation:
        assert self._generator is not None
        m, model = self._metrics, self._llm.llm_model
        queued = time.monotonic()
        async with self._slots:  # LLM_MAX_CONCURRENCY across every partition of this worker
            started = time.monotonic()
            m.queue_seconds.observe(started - queued)
            m.in_flight.inc()
            try:
                with spans.generating(model) as span:
                    try:
                        gen = await self._generator.generate(task)
                    except (TransientError, PermanentError) as exc:
                        spans.generated(span, getattr(exc, "usage", None))
                        raise
                    spans.generated(span, gen.usage)
            except (TransientError, PermanentError) as exc:
                m.api_errors.labels(getattr(exc, "error_class", type(exc).__name__)).inc()
                usage = getattr(exc, "usage", None)
                if usage is not None:  # tokens were billed for an answer we could not use
                    m.count_usage(usage)
                    m.generations.labels(model, "malformed").inc()
                raise
            finally:
                m.in_flight.dec()
                m.latency.labels(model).observe(time.monotonic() - started)
        m.generations.labels(model, "ok").inc()
        m.count_usage(gen.usage)
        return gen

    # -- outputs -------------------------------------------------------------------------

    def _policy(self, route: Route) -> Policy:
        return Policy(max_bytes=self._llm.max_code_bytes,
                      light_packages=frozenset(self._llm.light_packages or ()),
                      heavy_packages=frozenset(self._llm.heavy_packages or ()),
                      allow_heavy=route is not Route.LIGHT)

    def _command(self, job: _Job, attempt: int, code: str, source: str, check: CodeCheck,
                 gen: Generation | None, history: list[AttemptRecord]) -> Emit:
        route, reason = resolve_route(
            requested=job.route, limits=job.limits, execution=self._execution,
            heavy_only_packages=check.heavy_only(self._policy(job.route)),
            estimate=gen.submission if gen else None)
        log.info("llm.command", attempt=attempt, source=source, route=route.value,
                 route_reason=reason)
        return Emit(self._hubs.executions, ExecutionCommand(
            request_id=job.request_id, attempt=attempt, code=code, route=route,
            route_reason=reason, requested_route=job.route, limits=job.limits,
            inputs=job.inputs, source=source,  # type: ignore[arg-type]
            prompt=job.prompt or None, allow_rewrite=job.allow_rewrite,
            validation=check.report, usage=gen.usage if gen else None,
            history=list(history), metadata=job.metadata,
        ))

    def _final(self, job: _Job, attempt: int, status: ResultStatus, error: ErrorInfo | None,
               *, history: list[AttemptRecord], code: str | None = None) -> Emit:
        log.info("llm.final", attempt=attempt, status=status.value,
                 error=error.code if error else None)
        return Emit(self._hubs.results, ExecutionResult(
            request_id=job.request_id, attempt=attempt, status=status, error=error,
            attempts=list(history), code=code, metadata=job.metadata,
        ))


def _rejected(attempt: int, code: str, source: str, check: CodeCheck,
              gen: Generation | None) -> AttemptRecord:
    return AttemptRecord(
        attempt=attempt, code=code, source=source,  # type: ignore[arg-type]
        validation=check.report, status=ResultStatus.REJECTED,
        usage=gen.usage if gen else None,
        error=ErrorInfo(code="validation_failed", message=describe(check.report)),
    )


def _error_details(exc: Exception) -> dict[str, object]:
    details: dict[str, object] = {"error_class": getattr(exc, "error_class", type(exc).__name__)}
    if (status := getattr(exc, "status", None)) is not None:
        details["status"] = status
    return details
