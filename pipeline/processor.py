"""The consume loop every worker runs: decode -> handle -> publish -> checkpoint.

Per owned partition (:mod:`pipeline.partition_run`), events are handled with up to
``max_concurrency`` in flight; events of one partition key (one request) are handled
strictly in order. A checkpoint covers only the prefix of events that are all finished,
and is written in batches (every ``checkpoint_every`` events or ``checkpoint_interval_s``
seconds), never per event. What happens to one event, retries and dead letters included,
is :mod:`pipeline.dispatch`: every event ends, as outputs or as a dead letter. Outputs
the bus refuses are kept and re-published until they go (:mod:`pipeline.outbox`); the
event stays unfinished until then, and intake pauses while kept outputs pass
``UNPUBLISHED_MAX_BYTES``. A partition held back longer than ``STUCK_AFTER_S`` shows in
:meth:`Processor.stuck` (readiness fails on it) and in ``llmexec_partition_stuck_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from pipeline.bus.ports import (
    Bus,
    PartitionContext,
    Publisher,
    ReceivedEvent,
    StartPosition,
)
from pipeline.dispatch import EventDispatcher
from pipeline.handling import Handler
from pipeline.observability.metrics import PipelineMetrics
from pipeline.outbox import UnpublishedBudget
from pipeline.partition_run import PartitionRun, StuckReport
from pipeline.retries import RetryPolicy
from pipeline.settings import ProcessorSettings

log = structlog.get_logger(__name__)


class Processor:
    def __init__(
        self,
        *,
        name: str,
        bus: Bus,
        hub: str,
        consumer_group: str,
        handler: Handler,
        accepts: frozenset[str],
        deadletter_hub: str,
        settings: ProcessorSettings,
        metrics: PipelineMetrics | None = None,
        publisher: Publisher | None = None,
        owner_id: str | None = None,
        start: StartPosition = "earliest",
    ) -> None:
        self.name = name
        self.hub = hub
        self.consumer_group = consumer_group
        self._settings = settings
        self._metrics = metrics or PipelineMetrics()
        self.subscription = bus.subscribe(hub, consumer_group, owner_id=owner_id, start=start)
        self._partitions: dict[str, PartitionRun] = {}
        retry = RetryPolicy(settings.transient_retries, settings.retry_backoff_s,
                            settings.retry_backoff_max_s)
        self._dispatcher = EventDispatcher(
            name=name, hub=hub, consumer_group=consumer_group, handler=handler,
            accepts=accepts, deadletter_hub=deadletter_hub,
            publisher=publisher or bus.publisher(), retry=retry, metrics=self._metrics,
            republish=RetryPolicy(None, settings.retry_backoff_s, settings.retry_backoff_max_s))
        self._budget = UnpublishedBudget(settings.unpublished_max_bytes)
        self._metrics.unpublished_bytes.labels(name).set_function(lambda: self._budget.used)
        self._closing_grace: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`."""
        log.info("processor.start", worker=self.name, hub=self.hub, group=self.consumer_group)
        await self.subscription.run(self)
        log.info("processor.stopped", worker=self.name, hub=self.hub)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop receiving; in-flight events get ``grace_s`` to finish, then a final checkpoint."""
        self._closing_grace = self._settings.shutdown_grace_s if grace_s is None else grace_s
        await self.subscription.stop()

    def owned_partitions(self) -> frozenset[str]:
        return self.subscription.owned_partitions()

    def stuck(self) -> list[StuckReport]:
        """Partitions held back longer than ``STUCK_AFTER_S``, with the reason."""
        reports = (run.stuck_report() for run in list(self._partitions.values()))
        return [r for r in reports if r is not None and r.age_s >= self._settings.stuck_after_s]

    def stuck_detail(self) -> list[dict[str, object]]:
        """:meth:`stuck` for a readiness body."""
        return [{"worker": self.name, "hub": self.hub, "partition": r.partition_id,
                 "stuck_s": round(r.age_s, 1), "reason": r.reason} for r in self.stuck()]

    # -- PartitionReceiver -----------------------------------------------------------

    async def on_open(self, ctx: PartitionContext) -> None:
        self._partitions[ctx.partition_id] = PartitionRun(
            ctx, self._settings, self._dispatcher.finish,
            self._metrics.for_partition(self.name, self.hub, ctx.partition_id),
            redeliver=self._dispatcher.redeliver, budget=self._budget)
        log.info("partition.open", worker=self.name, hub=self.hub, partition=ctx.partition_id)

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        await self._partitions[ctx.partition_id].submit(events)

    async def on_close(self, ctx: PartitionContext, reason: str) -> None:
        run = self._partitions.pop(ctx.partition_id, None)
        if run is None:
            return
        grace = self._closing_grace if reason == "shutdown" else None
        await run.close(grace)
        log.info("partition.close", worker=self.name, hub=self.hub, partition=ctx.partition_id,
                 reason=reason)
