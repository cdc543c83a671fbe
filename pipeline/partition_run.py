"""One owned partition inside a processor: bounded concurrency, per-key order, checkpoints,
kept outputs, and the partition's stuck report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from pipeline.bus.ports import PartitionContext, ReceivedEvent
from pipeline.dispatch import WaitForRequest
from pipeline.observability import stages
from pipeline.observability.metrics import PartitionMetrics
from pipeline.outbox import Delivery, Outbox, UnpublishedBudget
from pipeline.settings import ProcessorSettings
from pipeline.window import CheckpointWindow

#: Handles one event to its end (see pipeline.dispatch): None when finished, else the
#: outputs the bus refused, to keep.
Finish = Callable[[PartitionContext, ReceivedEvent, WaitForRequest], Awaitable[Delivery | None]]
#: Re-publishes kept outputs until they go.
Redeliver = Callable[[PartitionContext, ReceivedEvent, Delivery], Awaitable[None]]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StuckReport:
    """What holds a partition's checkpoint back, and for how long."""

    partition_id: str
    age_s: float
    reason: str


class PartitionRun:
    """Events are taken in partition order (:meth:`submit`) and handled by up to
    ``max_concurrency`` workers, long-lived tasks started as the load needs them. A worker
    takes the next free event as soon as it is done with one, without going back to the
    event loop, so a batch of quick events costs one task step rather than a task each;
    events of one partition key wait in line behind the one being handled (they take no
    worker while they wait)."""

    def __init__(self, ctx: PartitionContext, settings: ProcessorSettings, finish: Finish,
                 metrics: PartitionMetrics, *, redeliver: Redeliver | None = None,
                 budget: UnpublishedBudget | None = None) -> None:
        self._finish = finish
        self._ctx = ctx
        self._settings = settings
        self._max_workers = settings.max_concurrency
        self._every = settings.checkpoint_every
        self._window = CheckpointWindow()
        self._budget = budget or UnpublishedBudget(settings.unpublished_max_bytes)
        self._outbox = Outbox(self._redeliver_with(redeliver), self._delivered, self._budget)
        self._ready: deque[ReceivedEvent] = deque()  # taken, free to start, in order
        # Per partition key with an event waiting or being handled: the later ones, in order
        # (None while there are none: most keys have one event at a time).
        self._held: dict[str, deque[ReceivedEvent] | None] = {}
        self._queued = 0  # taken, not started (ready or held)
        self._running = 0  # being handled
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for work
        self._workers: set[asyncio.Task[None]] = set()
        self._top_up_due = False
        self._closed = False  # no worker starts any more
        self._room: asyncio.Future[None] | None = None  # submit waiting for room
        self._drained: asyncio.Future[None] | None = None  # close waiting for the work
        self._last_checkpoint = time.monotonic()
        self._checkpoint_failing: tuple[float, str] | None = None  # since, error
        self._checkpoint_lock = asyncio.Lock()
        self._flusher = asyncio.create_task(self._flush_periodically())
        self._in_flight = metrics.in_flight
        self._lag = metrics.checkpoint_lag
        self._lag.set_function(lambda: self._window.lag)  # read at scrape, not per event
        self._checkpoints = metrics.checkpoints
        self._stuck_gauge = metrics.stuck_seconds
        self._stuck_gauge.set_function(self.stuck_age)

    def _redeliver_with(self, redeliver: Redeliver | None
                        ) -> Callable[[ReceivedEvent, Delivery], Awaitable[None]]:
        async def run(event: ReceivedEvent, delivery: Delivery) -> None:
            if redeliver is None:
                raise RuntimeError("no redeliver configured")
            await redeliver(self._ctx, event, delivery)
        return run

    # -- intake ----------------------------------------------------------------------------

    async def submit(self, events: Sequence[ReceivedEvent]) -> None:
        """Take ``events`` (in partition order) for handling. Waits first while kept
        (unpublished) outputs are over their bound; returns once at most
        ``max_concurrency`` of the partition's events are waiting or being handled (the
        bus delivers the next batch only then)."""
        budget = self._budget
        if budget.used >= budget.max_bytes:
            await budget.room()
        self._window.add_all(events)
        held, ready = self._held, self._ready
        for event in events:
            key = event.partition_key or event.properties.get("request_id") or None
            if key:
                if key in held:  # same key: strictly after the one before
                    line = held[key]
                    if line is None:
                        line = held[key] = deque()
                    line.append(event)
                    continue
                held[key] = None
            ready.append(event)
        self._queued += len(events)
        self._wake()
        while self._queued + self._running > self._max_workers:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    def _wake(self) -> None:
        """Start a worker (an idle one, else a new one) for the ready events; more follow
        once the current task step is over, for whatever is still ready then (a worker
        going from event to event takes most of them itself)."""
        if not self._ready:
            return
        if not self._start_workers(1):
            return
        if len(self._ready) > 1 and not self._top_up_due:
            self._top_up_due = True
            asyncio.get_running_loop().call_soon(self._top_up)

    def _top_up(self) -> None:
        self._top_up_due = False
        self._closed = False  # no worker starts any more
        self._start_workers(len(self._ready))

    def _start_workers(self, wanted: int) -> int:
        if self._closed:
            return 0
        started = 0
        while started < wanted and self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                started += 1
        while started < wanted and len(self._workers) < self._max_workers:
            worker = asyncio.create_task(self._work(),
                                         name=f"partition-{self._ctx.partition_id}-worker")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
            started += 1
        return started

    # -- workers ---------------------------------------------------------------------------

    async def _work(self) -> None:
        ready, budget, in_flight = self._ready, self._budget, self._in_flight
        loop = asyncio.get_running_loop()
        # The in-flight gauge counts this worker from the event it takes until it waits
        # for anything but a handler: going from event to event it stays counted (nothing
        # can look in between), instead of two locked updates per event.
        busy = False
        try:
            while not self._closed:  # also ends a worker whose cancellation was swallowed
                # (asyncio.wait_for in 3.11 does, when the awaited call is done as it is
                # cancelled: the checkpoint write)
                if not ready or budget.used >= budget.max_bytes:
                    if busy:
                        in_flight.dec()
                        busy = False
                    if ready:  # intake paused: start nothing new
                        await budget.room()
                        continue
                    waiter = loop.create_future()
                    self._idle.append(waiter)
                    await waiter
                    continue
                event = ready.popleft()
                self._queued -= 1
                self._running += 1
                if not busy:
                    in_flight.inc()
                    busy = True
                kept: Delivery | None = None
                try:
                    kept = await self._finish(self._ctx, event, self._outbox.wait_for)
                    if kept is not None:
                        self._outbox.keep(event, kept)  # finished once its outputs leave
                    else:
                        self._window.finish(event, True)
                except Exception:  # a bug in the bookkeeping: the event stays unfinished
                    log.exception("partition.event_lost", partition=self._ctx.partition_id,
                                  sequence_number=event.sequence_number)
                finally:
                    self._running -= 1
                    self._release(event)
                if kept is None and self._window.pending_checkpoint >= self._every:
                    in_flight.dec()
                    busy = False
                    self._wake()  # what is ready need not wait for the write
                    await self._checkpoint_due()
        finally:
            if busy:
                in_flight.dec()

    def _release(self, event: ReceivedEvent) -> None:
        """``event`` is no longer being handled: the next of its key may start; wake
        whoever waits for room or for the work to drain."""
        key = event.partition_key or event.properties.get("request_id") or None
        if key:
            line = self._held.get(key)
            if line:  # its turn, ahead of later keys (this worker takes it next); the key
                self._ready.appendleft(line.popleft())  # stays held by it
            else:
                self._held.pop(key, None)
        if self._room is not None and self._queued + self._running <= self._max_workers \
                and not self._room.done():
            self._room.set_result(None)
        if self._drained is not None and not (self._queued or self._running) \
                and not self._drained.done():
            self._drained.set_result(None)

    async def _delivered(self, event: ReceivedEvent) -> None:
        """``event``'s kept outputs have all left (the outbox calls this)."""
        self._window.finish(event, True)
        if self._window.pending_checkpoint >= self._every:
            await self._checkpoint_due()

    async def _checkpoint_due(self) -> None:
        """``checkpoint_every`` events are finished and not covered: write. One write at a
        time: work finished during a write is covered by the next, written as soon as this
        one is done if a batch's worth finished meanwhile (so a slow checkpoint store gets
        fewer, larger writes, never a burst). A failed write is left to the flusher."""
        if self._checkpoint_lock.locked():
            return
        window = self._window
        while window.pending_checkpoint >= self._every:
            before = window.checkpointed_seq
            await self.checkpoint()
            if window.checkpointed_seq == before:
                return

    async def checkpoint(self) -> None:
        async with self._checkpoint_lock:
            target = self._window.checkpointable
            if target is None or target.sequence_number <= self._window.checkpointed_seq:
                return
            try:
                with stages.checkpointing(self._ctx.hub, self._ctx.consumer_group,
                                          self._ctx.partition_id, target):
                    await asyncio.wait_for(self._ctx.checkpoint(target),
                                           self._settings.checkpoint_timeout_s)
            except Exception as exc:  # the next flush tries again; processing goes on
                error = str(exc) or type(exc).__name__
                if self._checkpoint_failing is None:
                    self._checkpoint_failing = (time.monotonic(), error)
                    log.warning("checkpoint.failed", partition=self._ctx.partition_id,
                                error=error)
                else:
                    self._checkpoint_failing = (self._checkpoint_failing[0], error)
                return
            if self._checkpoint_failing is not None:
                log.info("checkpoint.resumed", partition=self._ctx.partition_id,
                         after_s=round(time.monotonic() - self._checkpoint_failing[0], 3))
                self._checkpoint_failing = None
            self._window.mark_checkpointed(target)
            self._last_checkpoint = time.monotonic()
            self._checkpoints.inc()

    async def _flush_periodically(self) -> None:
        """Every ``checkpoint_interval_s`` after the last write (or try), checkpoint what is
        finished: an event is covered at most one interval after it finished."""
        interval = self._settings.checkpoint_interval_s
        last_try = self._last_checkpoint
        while True:
            due = max(self._last_checkpoint, last_try) + interval
            now = time.monotonic()
            if now < due:
                await asyncio.sleep(due - now)
                continue
            last_try = now
            await self.checkpoint()

    # -- stuck report --------------------------------------------------------------------

    def stuck_report(self) -> StuckReport | None:
        """The oldest thing holding this partition's checkpoint back, if anything is."""
        now = time.monotonic()
        candidates: list[StuckReport] = []
        pid = self._ctx.partition_id
        head = self._window.oldest_unfinished()
        if head is not None:
            event, since = head
            kept = self._outbox.oldest()
            why = (f"event {event.sequence_number} unfinished"
                   + (f"; {len(self._outbox)} output(s) waiting to be published, last error: "
                      f"{kept.error}" if kept is not None else ""))
            candidates.append(StuckReport(pid, now - since, why))
        if self._checkpoint_failing is not None:
            since, error = self._checkpoint_failing
            candidates.append(StuckReport(pid, now - since,
                                          f"checkpoint store failing: {error}"))
        return max(candidates, key=lambda r: r.age_s, default=None)

    def stuck_age(self) -> float:
        report = self.stuck_report()
        return 0.0 if report is None else report.age_s

    # -- close ---------------------------------------------------------------------------

    async def close(self, grace_s: float | None) -> None:
        """Shutdown (``grace_s`` set): let the work taken (and kept outputs) finish within
        the grace period, then checkpoint. Lost ownership (``None``): abandon at once, no
        checkpoint, since the new owner is already moving the group's checkpoint (and the
        SDK re-opens a partition closed after a dropped link from the stored checkpoint it
        read: a late write of ours would only race it)."""
        self._stuck_gauge.set_function(lambda: 0.0)
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        if grace_s is not None and (self._queued or self._running or len(self._outbox)):
            deadline = time.monotonic() + grace_s
            if self._queued or self._running:
                self._drained = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drained), grace_s)
            outbox = self._outbox.tasks()
            if outbox:
                await asyncio.wait(outbox, timeout=max(0.0, deadline - time.monotonic()))
            pending = self._queued + self._running + len(self._outbox)
            if pending:
                log.warning("shutdown.abandoned", partition=self._ctx.partition_id,
                            count=pending)
        self._closed = True
        workers = set(self._workers)
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)
        await self._outbox.close()
        if grace_s is not None:
            await self.checkpoint()
        lag = self._window.lag  # as it was left; the run is gone
        self._lag.set_function(lambda: lag)
