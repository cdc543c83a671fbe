"""One event to its end: decode -> handle (with in-process retries) -> encode -> publish, or
a dead letter with the reason. The processor's try budget lives here and is told to the
handler (``EventContext.try_number`` / ``final_try``), so no handler recomputes it.

Every event ends. ``TransientError`` from the handler is retried in-process with backoff,
``TRANSIENT_RETRIES`` times at most; a ``PermanentError``, an undecodable body, an event of
the wrong kind for the hub, spent retries, and *any* exception escaping decode, handle,
encode or publish (a bug) go to the dead-letter hub with the reason and the traceback
summary. Outputs (or a dead-letter record) the bus still refuses after the bounded
retries come back as a :class:`~pipeline.outbox.Delivery`: the partition run keeps them
and :meth:`EventDispatcher.redeliver` re-publishes them, with capped backoff, until they go.
"""

from __future__ import annotations

import contextvars
import hashlib
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from pipeline.bus.ports import OutgoingEvent, PartitionContext, Publisher, ReceivedEvent
from pipeline.errors import PermanentError, TransientError
from pipeline.handling import Emit, EventContext, Handler, dead_letter
from pipeline.observability import stages as tracing_hooks
from pipeline.observability.metrics import PipelineMetrics
from pipeline.outbox import Delivery
from pipeline.retries import RetryPolicy
from schemas import DeadLetter, DecodeError, Event, decode_event, derived_id

log = structlog.get_logger(__name__)

#: Waits until no output of the request is waiting to be published.
WaitForRequest = Callable[[str], Awaitable[None]]


async def _no_wait(_: str) -> None:
    return None


_HAS_ATTEMPT: dict[type, bool] = {}


def _attempt(decoded: Event) -> int:
    """The event's repair attempt (1 for kinds without one). Looked up by type: a
    pydantic model raises, and formats, an AttributeError for a missing field, which costs
    more than the rest of a no-op event's bookkeeping."""
    kind = type(decoded)
    has = _HAS_ATTEMPT.get(kind)
    if has is None:
        has = _HAS_ATTEMPT[kind] = "attempt" in kind.model_fields
    return int(getattr(decoded, "attempt")) if has else 1  # noqa: B009


def _evidence(exc: BaseException) -> str:
    where = "".join(traceback.format_exception(exc, limit=-3))
    return where.encode("utf-8", "backslashreplace").decode()


class EventDispatcher:
    def __init__(self, *, name: str, hub: str, consumer_group: str, handler: Handler,
                 accepts: frozenset[str], deadletter_hub: str, publisher: Publisher,
                 retry: RetryPolicy, metrics: PipelineMetrics,
                 republish: RetryPolicy | None = None) -> None:
        self.name = name
        self.hub = hub
        self.consumer_group = consumer_group
        self._handler = handler
        self._accepts = accepts
        self._deadletter_hub = deadletter_hub
        self._publisher = publisher
        self._retry = retry
        self._last_try = retry.tries
        # Kept outputs: until they go, backoff capped like the in-process retries.
        self._republish = republish or RetryPolicy(None, 0.5, 30.0)
        self._metrics = metrics
        # Label children resolved once: labels() is a locked dict lookup per call otherwise.
        self._m_ok = metrics.events.labels(name, hub, "ok")
        self._m_kept = metrics.events.labels(name, hub, "unfinished")
        self._m_retries = metrics.retries.labels(name, hub)
        self._m_latency = metrics.handler_seconds.labels(name, hub)

    async def finish(self, ctx: PartitionContext, event: ReceivedEvent,
                     wait_for: WaitForRequest = _no_wait) -> Delivery | None:
        """Handle one event to the end. None when finished (outputs or dead letter
        published); else the delivery the bus refused, for the caller to keep."""
        if not tracing_hooks.live(event):  # no spans to make: skip the hooks
            return await self._finish(ctx, event, wait_for, tracing_hooks.NO_SPAN, False)
        with tracing_hooks.processing(self.name, self.hub, self.consumer_group,
                                      event) as span:
            return await self._finish(ctx, event, wait_for, span, True)

    async def _finish(self, ctx: PartitionContext, event: ReceivedEvent,
                      wait_for: WaitForRequest, span: Any, traced: bool) -> Delivery | None:
        # The log context is bound once the event is decoded, in one call (and reset by
        # token: bound_contextvars() copies the whole context to save what it overrides,
        # which costs more than a no-op event's handling); only a failed decode binds the
        # event's place without the request.
        fallback_id = derived_id("request", self.hub, ctx.partition_id, event.sequence_number)
        request_id: str | None = None  # what was learnt before a crash, for the record
        try:
            if traced:
                with tracing_hooks.decoding():
                    decoded = decode_event(event.body, fallback_request_id=fallback_id)
            else:
                decoded = decode_event(event.body, fallback_request_id=fallback_id)
            request_id = decoded.request_id
            attempt = _attempt(decoded)
            if traced:
                tracing_hooks.decoded(span, decoded.kind, request_id, attempt)
        except Exception as exc:
            tokens = self._bind_place(ctx, event)
            try:
                if isinstance(exc, DecodeError):
                    return await self._dead_letter(ctx, event, f"malformed event: {exc}",
                                                   "DecodeError", 0, None, cause="malformed")
                return await self._crashed(ctx, event, exc, request_id or None)
            finally:
                reset_contextvars(**tokens)
        tokens = self._bind_place(ctx, event, request_id=request_id, attempt=attempt)
        try:
            if decoded.kind not in self._accepts:
                reason = (f"unexpected event kind {decoded.kind!r} on hub {self.hub!r} "
                          f"(accepts {', '.join(sorted(self._accepts))})")
                return await self._dead_letter(ctx, event, reason, "UnexpectedKind", 0,
                                               request_id, cause="malformed")
            if request_id:
                await wait_for(request_id)  # an earlier output of this request goes first
            return await self._handle_decoded(ctx, event, decoded)
        except Exception as exc:  # escaped handle/encode/publish: keep the evidence
            return await self._crashed(ctx, event, exc, request_id or None)
        finally:
            reset_contextvars(**tokens)

    def _bind_place(self, ctx: PartitionContext, event: ReceivedEvent,
                    **more: Any) -> Mapping[str, contextvars.Token[Any]]:
        """Bind the event's place (and ``more``) to the log context; the tokens to reset."""
        return bind_contextvars(worker=self.name, hub=self.hub, partition=ctx.partition_id,
                                offset=event.offset, sequence_number=event.sequence_number,
                                **more)

    async def _crashed(self, ctx: PartitionContext, event: ReceivedEvent, exc: Exception,
                       request_id: str | None) -> Delivery | None:
        log.exception("event.crashed", exc_info=exc)
        return await self._dead_letter(
            ctx, event, f"processing crashed: {exc!r}\n{_evidence(exc)}",
            type(exc).__name__, 0, request_id, cause="crash")

    async def _handle_decoded(self, ctx: PartitionContext, event: ReceivedEvent,
                              decoded: Event) -> Delivery | None:
        tries = 0
        last_try = self._last_try

        async def run_handler(try_number: int) -> Sequence[Emit]:
            nonlocal tries
            tries = try_number
            ectx = EventContext(self.hub, self.consumer_group, ctx.partition_id, event.offset,
                                event.sequence_number, event.enqueued_time, try_number,
                                try_number >= last_try)
            return await self._handler(decoded, ectx)

        started = time.monotonic()
        try:
            outputs = await self._retry.call(run_handler, self._on_retry)
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
            return await self._dead_letter(ctx, event,
                                           f"handler crashed: {exc!r}\n{_evidence(exc)}",
                                           type(exc).__name__, tries, decoded.request_id,
                                           cause="crash")
        finally:
            self._m_latency.observe(time.monotonic() - started)
        if not outputs and isinstance(outputs, (list, tuple)):  # nothing to publish
            self._m_ok.inc()
            return None
        try:
            delivery = self._encode(outputs, decoded.request_id)
        except Exception as exc:
            log.exception("output.unencodable")
            return await self._dead_letter(
                ctx, event, f"output could not be encoded: {exc!r}\n{_evidence(exc)}",
                type(exc).__name__, tries, decoded.request_id, cause="crash")
        try:
            kept = await self._deliver(delivery)
        except PermanentError as exc:
            return await self._dead_letter(ctx, event, f"output not publishable: {exc}",
                                           type(exc).__name__, tries, decoded.request_id,
                                           cause="permanent")
        if kept is None:
            self._m_ok.inc()
        return kept

    def _on_retry(self, tries: int, exc: BaseException) -> None:
        self._m_retries.inc()
        tracing_hooks.retrying(tries, exc)
        log.warning("handler.retry", tries=tries, error=str(exc))

    def _encode(self, outputs: Sequence[Emit], request_id: str | None) -> Delivery:
        by_hub: dict[str, list[Emit]] = {}
        for out in outputs:
            by_hub.setdefault(out.hub, []).append(out)
        batches: list[tuple[str, list[OutgoingEvent]]] = []
        for hub, emits in by_hub.items():
            with tracing_hooks.publishing(hub, emits):  # encoded inside: children of it
                batches.append((hub, [e.encode() for e in emits]))
        return Delivery(batches, request_id, emits=list(outputs))

    async def _deliver(self, delivery: Delivery, retry: RetryPolicy | None = None
                       ) -> Delivery | None:
        """Publish what is left of ``delivery``; the delivery itself when the bus still
        refuses after the retries (TransientError). PermanentError propagates."""
        policy = retry or self._retry
        while delivery.batches:
            hub, encoded = delivery.batches[0]

            async def send(_: int, hub: str = hub, encoded: list[OutgoingEvent] = encoded
                           ) -> None:
                await self._publisher.publish(hub, encoded)

            try:
                await policy.call(send)
            except TransientError as exc:
                delivery.error = str(exc)
                log.error("publish.failed", hub=hub, error=str(exc))
                self._m_kept.inc()
                return delivery
            delivery.batches.pop(0)
            self._metrics.published.labels(self.name, hub).inc(len(encoded))
            self._metrics.count_outputs(self.name, [e for e in delivery.emits if e.hub == hub])
        return None

    async def redeliver(self, ctx: PartitionContext, event: ReceivedEvent,
                        delivery: Delivery) -> None:
        """Re-publish a kept delivery until it goes (capped backoff). Refused for good
        (PermanentError, or a bug in the publisher): the event is dead-lettered instead."""
        with structlog.contextvars.bound_contextvars(
            worker=self.name, hub=self.hub, partition=ctx.partition_id,
            sequence_number=event.sequence_number, request_id=delivery.request_id,
        ):
            try:
                await self._deliver(delivery, self._republish)
                return
            except Exception as exc:
                log.exception("output.refused")
                reason = f"output not publishable: {exc!r}"
            fallback = await self._dead_letter(ctx, event, reason, "PermanentError", 0,
                                               delivery.request_id, cause="permanent")
            if fallback is not None:
                await self._deliver(fallback, self._republish)

    async def _dead_letter(self, ctx: PartitionContext, event: ReceivedEvent, reason: str,
                           error_type: str, attempts: int, request_id: str | None,
                           *, cause: str) -> Delivery | None:
        reason = reason.encode("utf-8", "backslashreplace").decode()
        log.warning("event.deadletter", reason=reason.splitlines()[0] if reason else "",
                    cause=cause)
        tracing_hooks.dead_lettered(cause, reason)
        try:
            full = dead_letter(event, hub=self.hub, consumer_group=self.consumer_group,
                               reason=reason, error_type=error_type, attempts=attempts,
                               request_id=request_id)
            kept = await self._deliver(self._encode([Emit(self._deadletter_hub, full)], None))
        except Exception as exc:  # e.g. too large with the body: keep the evidence, not the body
            log.exception("deadletter.refused")
            digest = hashlib.sha256(event.body).hexdigest()
            slim = DeadLetter(
                request_id=request_id, error_type=error_type, attempts=attempts,
                source_hub=self.hub, consumer_group=self.consumer_group,
                partition_id=event.partition_id, offset=event.offset,
                sequence_number=event.sequence_number, body_b64="",
                reason=(f"{reason[:3000]}\n[body of {len(event.body)} bytes, sha256 {digest}, "
                        f"left out: the dead letter with it was refused: {exc!r}]"))
            try:
                kept = await self._deliver(self._encode([Emit(self._deadletter_hub, slim)],
                                                        None))
            except Exception:
                log.critical("deadletter.dropped", cause=cause)
                self._metrics.events.labels(self.name, self.hub, "dropped").inc()
                return None
        if kept is None:
            self._metrics.deadletters.labels(self.name, self.hub, cause).inc()
            self._metrics.events.labels(self.name, self.hub, "deadlettered").inc()
        return kept
