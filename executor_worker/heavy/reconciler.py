"""Publish what detached heavy jobs finished: one result (or repair request) per job.

The runner yields a completion only after it has claimed the job (so of several executor
replicas, one publishes); after publishing, ``mark_reported`` records that on the job. A
crash in between publishes again on the next claim: harmless, because result ids derive from
``(request_id, attempt)`` and consumers deduplicate on them.
"""

from __future__ import annotations

from collections import defaultdict

import structlog

from executor_worker import observe
from executor_worker.heavy.runner import JobCompletion, JobRunner
from executor_worker.results import emits_for, outcome_result
from pipeline.bus.ports import OutgoingEvent, Publisher
from pipeline.errors import PermanentError
from pipeline.handling import Emit
from pipeline.retries import RetryPolicy
from schemas import ErrorInfo, ExecRoute, ExecutionResult, HubNames, ResultStatus

log = structlog.get_logger(__name__)


class Reconciler:
    def __init__(self, runner: JobRunner, publisher: Publisher, hubs: HubNames, *,
                 retry_delay_s: float = 1.0, max_retry_delay_s: float = 30.0) -> None:
        self._runner = runner
        self._publisher = publisher
        self._hubs = hubs
        # Until it goes: the Job stays unreported (held by its finalizer) meanwhile, so
        # giving up would lose nothing, but the bus usually comes back, and waiting keeps
        # results in order.
        self._retry = RetryPolicy(None, retry_delay_s, max_retry_delay_s)

    async def run(self) -> None:
        async for completion in self._runner.completions():
            await self.report(completion)

    async def report(self, completion: JobCompletion) -> None:
        with observe.reporting(completion):  # observability: the heavy.report span
            await self._report(completion)

    async def _report(self, completion: JobCompletion) -> None:
        emits = self.emits(completion)
        by_hub: dict[str, list[OutgoingEvent]] = defaultdict(list)
        for emit in emits:
            by_hub[emit.hub].append(emit.encode())

        async def publish(_: int) -> None:
            for hub, events in by_hub.items():
                await self._publisher.publish(hub, events)

        def on_retry(tries: int, exc: BaseException) -> None:
            log.warning("heavy.publish_retry", request_id=completion.request_id,
                        error=str(exc), tries=tries)

        try:
            await self._retry.call(publish, on_retry)
        except PermanentError as exc:
            log.error("heavy.publish_failed", request_id=completion.request_id,
                      attempt=completion.attempt, error=str(exc))
        await self._runner.mark_reported(completion)
        log.info("heavy.reported", request_id=completion.request_id,
                 attempt=completion.attempt, status=completion.outcome.status,
                 events=[e.event.kind for e in emits])

    def emits(self, completion: JobCompletion) -> list[Emit]:
        cmd, outcome = completion.command, completion.outcome
        if cmd is not None:
            return emits_for(self._hubs, cmd, outcome_result(cmd, outcome))
        # The command went with its Job (deleted before we could read it): a bare result
        # still answers the request.
        status = ResultStatus(outcome.status)
        return [Emit(self._hubs.results, ExecutionResult(
            request_id=completion.request_id, attempt=completion.attempt, status=status,
            route=ExecRoute.HEAVY, sandbox=list(outcome.layers),
            error=None if status is ResultStatus.SUCCEEDED else ErrorInfo(
                code=outcome.reason_code or "failed", message=outcome.reason or status.value),
        ))]
