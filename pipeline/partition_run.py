"""One owned partition inside a processor: bounded concurrency, per-key order, checkpoints,
kept outputs, and the partition's stuck report."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
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
    def __init__(self, ctx: PartitionContext, settings: ProcessorSettings, finish: Finish,
                 metrics: PartitionMetrics, *, redeliver: Redeliver | None = None,
                 budget: UnpublishedBudget | None = None) -> None:
        self._finish = finish
        self._ctx = ctx
        self._settings = settings
        self._window = CheckpointWindow()
        self._budget = budget or UnpublishedBudget(settings.unpublished_max_bytes)
        self._outbox = Outbox(self._redeliver_with(redeliver), self._delivered, self._budget)
        self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        self._tails: dict[str, asyncio.Task[None]] = {}  # last task per partition key
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_failing: tuple[float, str] | None = None  # since, error
        self._checkpoint_lock = asyncio.Lock()
        self._flusher = asyncio.create_task(self._flush_periodically())
        self._in_flight = metrics.in_flight
        self._lag = metrics.checkpoint_lag
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

    async def submit(self, event: ReceivedEvent) -> None:
        """Start handling ``event``; waits while ``max_concurrency`` events are in flight,
        or while kept (unpublished) outputs are over their bound."""
        await self._budget.room()
        await self._slots.acquire()
        self._window.add(event)
        key = event.partition_key or event.properties.get("request_id") or None
        previous = self._tails.get(key) if key else None
        task = asyncio.create_task(self._run(event, previous))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if key:
            self._tails[key] = task
            task.add_done_callback(functools.partial(self._forget_tail, key))
        self._report_lag()

    def _forget_tail(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _run(self, event: ReceivedEvent, previous: asyncio.Task[None] | None) -> None:
        in_flight = self._in_flight
        try:
            if previous is not None:
                await asyncio.wait([previous])  # same key: strictly after the one before
            in_flight.inc()
            try:
                kept = await self._finish(self._ctx, event, self._outbox.wait_for)
            finally:
                in_flight.dec()
        finally:
            self._slots.release()
        if kept is not None:
            self._outbox.keep(event, kept)  # finished once its outputs leave
            return
        await self._delivered(event)

    async def _delivered(self, event: ReceivedEvent) -> None:
        self._window.finish(event, True)
        # One write at a time; work finished during a write waits for the next batch, so a
        # slow checkpoint store does not turn into a burst of writes.
        if (self._window.pending_checkpoint >= self._settings.checkpoint_every
                and not self._checkpoint_lock.locked()):
            await self.checkpoint()

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
            self._report_lag()

    def _report_lag(self) -> None:
        self._lag.set(self._window.lag)

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
        """Shutdown (``grace_s`` set): let in-flight work (and kept outputs) finish within
        the grace period, then checkpoint. Lost ownership (``None``): abandon at once, no
        checkpoint, since the new owner is already moving the group's checkpoint (and the
        SDK re-opens a partition closed after a dropped link from the stored checkpoint it
        read: a late write of ours would only race it)."""
        self._stuck_gauge.set_function(lambda: 0.0)
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        if grace_s is not None and (self._tasks or len(self._outbox)):
            deadline = time.monotonic() + grace_s
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=grace_s)
            outbox = self._outbox.tasks()
            if outbox:
                await asyncio.wait(outbox, timeout=max(0.0, deadline - time.monotonic()))
            pending = len(self._tasks) + len(self._outbox)
            if pending:
                log.warning("shutdown.abandoned", partition=self._ctx.partition_id,
                            count=pending)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._outbox.close()
        if grace_s is not None:
            await self.checkpoint()
