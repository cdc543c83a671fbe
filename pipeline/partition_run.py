"""One owned partition inside a processor: bounded concurrency, per-key order, checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable

import structlog

from pipeline.bus.ports import PartitionContext, ReceivedEvent
from pipeline.observability import stages
from pipeline.observability.metrics import PartitionMetrics
from pipeline.settings import ProcessorSettings
from pipeline.window import CheckpointWindow

#: Handles one event to its end; True when it is finished (see pipeline.dispatch).
Finish = Callable[[PartitionContext, ReceivedEvent], Awaitable[bool]]

log = structlog.get_logger(__name__)


class PartitionRun:
    def __init__(self, ctx: PartitionContext, settings: ProcessorSettings, finish: Finish,
                 metrics: PartitionMetrics) -> None:
        self._finish = finish
        self._ctx = ctx
        self._settings = settings
        self._window = CheckpointWindow()
        self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        self._tails: dict[str, asyncio.Task[None]] = {}  # last task per partition key
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_lock = asyncio.Lock()
        self._flusher = asyncio.create_task(self._flush_periodically())
        self._in_flight = metrics.in_flight
        self._lag = metrics.checkpoint_lag
        self._checkpoints = metrics.checkpoints

    async def submit(self, event: ReceivedEvent) -> None:
        """Start handling ``event``; waits while ``max_concurrency`` events are in flight."""
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
                await asyncio.wait([previous])  # same request: strictly after the one before
            in_flight.inc()
            try:
                ok = await self._finish(self._ctx, event)
            finally:
                in_flight.dec()
        finally:
            self._slots.release()
        self._window.finish(event, ok)
        if not ok:
            log.error("event.unfinished", partition=self._ctx.partition_id,
                      sequence_number=event.sequence_number)
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
                    await self._ctx.checkpoint(target)
            except Exception as exc:  # the next flush tries again; nothing is lost meanwhile
                log.warning("checkpoint.failed", error=str(exc))
                return
            self._window.mark_checkpointed(target)
            self._last_checkpoint = time.monotonic()
            self._checkpoints.inc()
            self._report_lag()

    def _report_lag(self) -> None:
        self._lag.set(self._window.lag)

    async def _flush_periodically(self) -> None:
        interval = self._settings.checkpoint_interval_s
        while True:
            await asyncio.sleep(interval / 4)
            if time.monotonic() - self._last_checkpoint >= interval:
                await self.checkpoint()

    async def close(self, grace_s: float | None) -> None:
        """Shutdown (``grace_s`` set): let in-flight work finish within the grace period,
        then checkpoint. Lost ownership (``None``): abandon at once, no checkpoint, since
        the new owner is already moving the group's checkpoint."""
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        if grace_s is not None and self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            if pending:
                log.warning("shutdown.abandoned", partition=self._ctx.partition_id,
                            count=len(pending))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if grace_s is not None:
            await self.checkpoint()
