"""The consume loop every worker runs: decode -> handle -> publish -> checkpoint.

Per owned partition, events are handled with up to ``max_concurrency`` in flight; events of
one partition key (one request) are handled strictly in order. A checkpoint covers only the
prefix of events that are all finished, and is written in batches (every
``checkpoint_every`` events or ``checkpoint_interval_s`` seconds), never per event.

Failures: ``TransientError`` is retried in-process with backoff, ``MAX_RETRIES`` times at
most; a ``PermanentError``, an undecodable body, an event of the wrong kind for the hub, or
spent retries go to the dead-letter hub with the reason, and processing goes on. An event
whose outputs (or dead-letter record) cannot be published stays unfinished: the checkpoint
stops below it, so it is delivered again after a restart.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence

import structlog

from pipeline.bus.ports import (
    Bus,
    OutgoingEvent,
    PartitionContext,
    Publisher,
    ReceivedEvent,
    StartPosition,
)
from pipeline.errors import EventTooLargeError, PermanentError, TransientError
from pipeline.handling import Emit, EventContext, Handler, dead_letter
from pipeline.observability.metrics import PipelineMetrics
from pipeline.partition_run import PartitionRun
from pipeline.retries import RetryPolicy
from pipeline.settings import ProcessorSettings
from schemas import DecodeError, Event, decode_event, derived_id

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
        self._handler = handler
        self._accepts = accepts
        self._deadletter_hub = deadletter_hub
        self._settings = settings
        self._metrics = metrics or PipelineMetrics()
        self._publisher = publisher or bus.publisher()
        self.subscription = bus.subscribe(hub, consumer_group, owner_id=owner_id, start=start)
        self._partitions: dict[str, PartitionRun] = {}
        self._retry = RetryPolicy(settings.max_retries, settings.retry_backoff_s,
                                  settings.retry_backoff_max_s)
        # Label children resolved once: labels() is a locked dict lookup per call otherwise.
        m = self._metrics
        self._m_ok = m.events.labels(name, hub, "ok")
        self._m_unfinished = m.events.labels(name, hub, "unfinished")
        self._m_retries = m.retries.labels(name, hub)
        self._m_latency = m.handler_seconds.labels(name, hub)
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

    # -- PartitionReceiver -----------------------------------------------------------

    async def on_open(self, ctx: PartitionContext) -> None:
        self._partitions[ctx.partition_id] = PartitionRun(self, ctx)
        log.info("partition.open", worker=self.name, hub=self.hub, partition=ctx.partition_id)

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        run = self._partitions[ctx.partition_id]
        for event in events:
            await run.submit(event)

    async def on_close(self, ctx: PartitionContext, reason: str) -> None:
        run = self._partitions.pop(ctx.partition_id, None)
        if run is None:
            return
        grace = self._closing_grace if reason == "shutdown" else None
        await run.close(grace)
        log.info("partition.close", worker=self.name, hub=self.hub, partition=ctx.partition_id,
                 reason=reason)

    # -- one event -------------------------------------------------------------------

    async def handle(self, ctx: PartitionContext, event: ReceivedEvent) -> bool:
        """Handle one event to the end. True when finished (outputs or dead-letter published)."""
        fallback_id = derived_id("request", self.hub, ctx.partition_id, event.sequence_number)
        with structlog.contextvars.bound_contextvars(
            worker=self.name, hub=self.hub, partition=ctx.partition_id, offset=event.offset,
            sequence_number=event.sequence_number,
        ):
            try:
                decoded = decode_event(event.body, fallback_request_id=fallback_id)
            except DecodeError as exc:
                return await self._dead_letter(ctx, event, f"malformed event: {exc}",
                                               "DecodeError", 0, None, cause="malformed")
            request_id = decoded.request_id
            attempt = getattr(decoded, "attempt", 1)
            with structlog.contextvars.bound_contextvars(request_id=request_id, attempt=attempt):
                if decoded.kind not in self._accepts:
                    reason = (f"unexpected event kind {decoded.kind!r} on hub {self.hub!r} "
                              f"(accepts {', '.join(sorted(self._accepts))})")
                    return await self._dead_letter(ctx, event, reason, "UnexpectedKind", 0,
                                                   request_id, cause="malformed")
                return await self._handle_decoded(ctx, event, decoded)

    async def _handle_decoded(self, ctx: PartitionContext, event: ReceivedEvent,
                              decoded: Event) -> bool:
        tries = 0

        async def run_handler(try_number: int) -> Sequence[Emit]:
            nonlocal tries
            tries = try_number
            ectx = EventContext(self.hub, self.consumer_group, ctx.partition_id, event.offset,
                                event.sequence_number, event.enqueued_time, try_number)
            return await self._handler(decoded, ectx)

        def on_retry(tries: int, exc: BaseException) -> None:
            self._m_retries.inc()
            log.warning("handler.retry", tries=tries, error=str(exc))

        started = time.monotonic()
        try:
            outputs = await self._retry.call(run_handler, on_retry)
        except TransientError as exc:
            return await self._dead_letter(
                ctx, event,
                f"gave up after {tries} tries (MAX_RETRIES={self._settings.max_retries}): {exc}",
                type(exc).__name__, tries, decoded.request_id, cause="retries_exhausted")
        except PermanentError as exc:
            return await self._dead_letter(ctx, event, str(exc), type(exc).__name__, tries,
                                           decoded.request_id, cause="permanent")
        except Exception as exc:  # a bug in a handler: never loop on it, keep the evidence
            log.exception("handler.crashed")
            where = "".join(traceback.format_exception(exc, limit=-3))
            return await self._dead_letter(ctx, event, f"handler crashed: {exc!r}\n{where}",
                                           type(exc).__name__, tries, decoded.request_id,
                                           cause="crash")
        finally:
            self._m_latency.observe(time.monotonic() - started)
        try:
            await self._publish(outputs)
        except EventTooLargeError as exc:
            return await self._dead_letter(ctx, event, f"output not publishable: {exc}",
                                           type(exc).__name__, tries, decoded.request_id,
                                           cause="permanent")
        except TransientError as exc:
            log.error("publish.failed", error=str(exc))
            self._m_unfinished.inc()
            return False
        self._m_ok.inc()
        return True

    async def _publish(self, outputs: Sequence[Emit]) -> None:
        by_hub: dict[str, list[Emit]] = {}
        for out in outputs:
            by_hub.setdefault(out.hub, []).append(out)
        for hub, emits in by_hub.items():
            encoded = [e.encode() for e in emits]

            async def send(_: int, hub: str = hub, encoded: list[OutgoingEvent] = encoded) -> None:
                await self._publisher.publish(hub, encoded)

            await self._retry.call(send)
            self._metrics.published.labels(self.name, hub).inc(len(encoded))

    async def _dead_letter(self, ctx: PartitionContext, event: ReceivedEvent, reason: str,
                           error_type: str, attempts: int, request_id: str | None,
                           *, cause: str) -> bool:
        log.warning("event.deadletter", reason=reason.splitlines()[0], cause=cause)
        record = dead_letter(event, hub=self.hub, consumer_group=self.consumer_group,
                             reason=reason, error_type=error_type, attempts=attempts,
                             request_id=request_id)
        try:
            await self._publish([Emit(self._deadletter_hub, record)])
        except Exception:
            log.exception("deadletter.publish_failed")
            self._metrics.events.labels(self.name, self.hub, "unfinished").inc()
            return False
        self._metrics.deadletters.labels(self.name, self.hub, cause).inc()
        self._metrics.events.labels(self.name, self.hub, "deadlettered").inc()
        return True
