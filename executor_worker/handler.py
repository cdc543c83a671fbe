"""Execution commands -> results: run the code on its route, assemble the result.

An LLM-written attempt that fails goes back to the LLM worker as a ``RepairRequest`` (the
attempt number travels in the events, so a restart or a duplicate resumes the loop where it
was); the LLM worker repairs it or, with attempts spent, publishes the final result saying
so. Everything else becomes the request's final result here.

Heavy work goes to a :class:`JobRunner`. The local runner finishes inline; the Kubernetes
runner only submits the Job (no output, so the partition moves on) and the reconciler later
turns the finished Job into the same events (:mod:`executor_worker.results`).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from executor_worker import observe
from executor_worker.heavy.runner import JobRunner
from executor_worker.observe import ExecutorMetrics
from executor_worker.results import emits_for, failure_result, outcome_result, sandbox_job
from executor_worker.sandbox import Sandbox, SandboxOutcome
from executor_worker.settings import ExecutorSettings
from pipeline.errors import PermanentError
from pipeline.handling import Emit, EventContext
from pipeline.observability import tracing
from schemas import Event, ExecRoute, ExecutionCommand, HubNames

log = structlog.get_logger(__name__)


class ExecutorWorker:
    ACCEPTS = frozenset({"execution"})

    def __init__(
        self,
        *,
        hubs: HubNames,
        light: Sandbox,
        heavy: JobRunner | None,
        settings: ExecutorSettings,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        self._metrics = metrics or ExecutorMetrics()
        self._hubs = hubs
        self._light = light
        self._heavy = heavy
        self._settings = settings

    async def handle(self, event: Event, ctx: EventContext) -> Sequence[Emit]:
        if not isinstance(event, ExecutionCommand):
            raise PermanentError(f"executor cannot handle {event.kind!r} events")
        if event.route is ExecRoute.HEAVY and self._heavy is None:
            return emits_for(self._hubs, event, failure_result(
                event, "route_unavailable", "heavy execution is not available on this executor"))
        job = sandbox_job(event, self._settings)
        route = event.route.value
        # SandboxUnavailable (a lost zygote) is a TransientError: the processor retries.
        light_layers = self._light.layers() if event.route is ExecRoute.LIGHT else ()
        with observe.running(route, job, light_layers) as span:
            if event.route is ExecRoute.LIGHT:
                outcome: SandboxOutcome | None = await self._light.run(job)
            else:
                assert self._heavy is not None
                observe.HEAVY_JOBS.set(job.job_id, "running")  # inline runners
                try:
                    outcome = await self._heavy.submit(event, job)
                finally:
                    observe.HEAVY_JOBS.set(job.job_id, None)
            observe.ran(span, outcome)
        if outcome is None:
            # A detached runner took it; its reconciler publishes the result when it ends.
            tracing.remember(event.request_id, event.attempt)  # heavy.report joins the trace
            log.info("heavy.submitted", job_id=job.job_id)
            return []
        self._metrics.ran(route, outcome)
        return emits_for(self._hubs, event, outcome_result(event, outcome))
