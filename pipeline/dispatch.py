"""One event to its end: decode -> handle (with in-process retries) -> publish, or a
dead letter with the reason. The processor's try budget lives here and is told to the
handler (``EventContext.try_number`` / ``final_try``), so no handler recomputes it.

Failures: ``TransientError`` is retried in-process with backoff, ``TRANSIENT_RETRIES``
times at most; a ``PermanentError``, an undecodable body, an event of the wrong kind for
the hub, or spent retries go to the dead-letter hub with the reason. An event whose
outputs (or dead-letter record) cannot be published is reported unfinished (False).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence

import structlog

from pipeline.bus.ports import OutgoingEvent, PartitionContext, Publisher, ReceivedEvent
from pipeline.errors import EventTooLargeError, PermanentError, TransientError
from pipeline.handling import Emit, EventContext, Handler, dead_letter
from pipeline.observability import stages as tracing_hooks
from pipeline.observability.metrics import PipelineMetrics
from pipeline.retries import RetryPolicy
from schemas import DecodeError, Event, decode_event, derived_id

log = structlog.get_logger(__name__)


class EventDispatcher:
    def __init__(self, *, name: str, hub: str, consumer_group: str, handler: Handler,
                 accepts: frozenset[str], deadletter_hub: str, publisher: Publisher,
                 retry: RetryPolicy, metrics: PipelineMetrics) -> None:
        self.name = name
        self.hub = hub
        self.consumer_group = consumer_group
        self._handler = handler
        self._accepts = accepts
        self._deadletter_hub = deadletter_hub
        self._publisher = publisher
        self._retry = retry
        self._metrics = metrics
        # Label children resolved once: labels() is a locked dict lookup per call otherwise.
        self._m_ok = metrics.events.labels(name, hub, "ok")
        self._m_unfinished = metrics.events.labels(name, hub, "unfinished")
        self._m_retries = metrics.retries.labels(name, hub)
        self._m_latency = metrics.handler_seconds.labels(name, hub)

    async def finish(self, ctx: PartitionContext, event: ReceivedEvent) -> bool:
        """Handle one event to the end. True when finished (outputs or dead-letter published)."""
        fallback_id = derived_id("request", self.hub, ctx.partition_id, event.sequence_number)
        with structlog.contextvars.bound_contextvars(
            worker=self.name, hub=self.hub, partition=ctx.partition_id, offset=event.offset,
            sequence_number=event.sequence_number,
        ), tracing_hooks.processing(self.name, self.hub, self.consumer_group, event) as span:
            try:
                with tracing_hooks.decoding():
                    decoded = decode_event(event.body, fallback_request_id=fallback_id)
            except DecodeError as exc:
                return await self._dead_letter(ctx, event, f"malformed event: {exc}",
                                               "DecodeError", 0, None, cause="malformed")
            request_id = decoded.request_id
            attempt = getattr(decoded, "attempt", 1)
            tracing_hooks.decoded(span, decoded.kind, request_id, attempt)
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
        last_try = self._retry.tries

        async def run_handler(try_number: int) -> Sequence[Emit]:
            nonlocal tries
            tries = try_number
            ectx = EventContext(self.hub, self.consumer_group, ctx.partition_id, event.offset,
                                event.sequence_number, event.enqueued_time, try_number,
                                final_try=try_number >= last_try)
            return await self._handler(decoded, ectx)

        def on_retry(tries: int, exc: BaseException) -> None:
            self._m_retries.inc()
            tracing_hooks.retrying(tries, exc)
            log.warning("handler.retry", tries=tries, error=str(exc))

        started = time.monotonic()
        try:
            outputs = await self._retry.call(run_handler, on_retry)
        except TransientError as exc:
            return await self._dead_letter(
                ctx, event,
                f"gave up after {tries} tries (TRANSIENT_RETRIES={self._retry.max_retries}): "
                f"{exc}", type(exc).__name__, tries, decoded.request_id,
                cause="retries_exhausted")
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
            with tracing_hooks.publishing(hub, emits):  # encoded inside: children of it
                encoded = [e.encode() for e in emits]

                async def send(_: int, hub: str = hub,
                               encoded: list[OutgoingEvent] = encoded) -> None:
                    await self._publisher.publish(hub, encoded)

                await self._retry.call(send)
            self._metrics.published.labels(self.name, hub).inc(len(encoded))
            self._metrics.count_outputs(self.name, emits)

    async def _dead_letter(self, ctx: PartitionContext, event: ReceivedEvent, reason: str,
                           error_type: str, attempts: int, request_id: str | None,
                           *, cause: str) -> bool:
        log.warning("event.deadletter", reason=reason.splitlines()[0], cause=cause)
        tracing_hooks.dead_lettered(cause, reason)
        record = dead_letter(event, hub=self.hub, consumer_group=self.consumer_group,
                             reason=reason, error_type=error_type, attempts=attempts,
                             request_id=request_id)
        try:
            await self._publish([Emit(self._deadletter_hub, record)])
        except Exception:
            log.exception("deadletter.publish_failed")
            self._m_unfinished.inc()
            return False
        self._metrics.deadletters.labels(self.name, self.hub, cause).inc()
        self._metrics.events.labels(self.name, self.hub, "deadlettered").inc()
        return True
