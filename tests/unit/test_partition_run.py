"""One partition's run: workers taking batches of events, per-key order, the checkpoint at
the finished prefix only, backpressure on the bus, shutdown and lost ownership."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

from pipeline.bus.ports import OutgoingEvent, ReceivedEvent
from pipeline.dispatch import WaitForRequest
from pipeline.observability.metrics import PipelineMetrics
from pipeline.outbox import Delivery
from pipeline.partition_run import PartitionRun
from pipeline.settings import ProcessorSettings


class Ctx:
    hub, consumer_group, partition_id = "in", "g", "0"

    def __init__(self) -> None:
        self.checkpoints: list[int] = []

    async def checkpoint(self, event: ReceivedEvent) -> None:
        self.checkpoints.append(event.sequence_number)


def events(n: int, key: Callable[[int], str | None] = lambda i: f"k{i}",
           start: int = 0) -> list[ReceivedEvent]:
    return [ReceivedEvent(b"{}", "0", str(i), i, datetime.now(UTC), key(i))
            for i in range(start, start + n)]


class Finish:
    """Finishes events at once, or when their gate opens; records the order."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.keep: set[int] = set()  # returned as refused outputs (to the outbox)
        self.started: list[int] = []
        self.done: list[int] = []
        self.running = self.most = 0

    async def __call__(self, ctx: object, event: ReceivedEvent,
                      wait_for: WaitForRequest) -> Delivery | None:
        seq = event.sequence_number
        self.started.append(seq)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if seq in self.gates:
                await self.gates[seq].wait()
        finally:
            self.running -= 1
        self.done.append(seq)
        if seq in self.keep:
            return Delivery([("out", [OutgoingEvent(b"x")])], None, error="refused")
        return None


def make_run(finish: Finish, ctx: Ctx | None = None, metrics: PipelineMetrics | None = None,
             redeliver: Callable[..., object] | None = None, **kw: float) -> PartitionRun:
    settings = ProcessorSettings(**{"max_concurrency": 4, "checkpoint_every": 10,  # type: ignore[arg-type]
                                    "checkpoint_interval_s": 60, **kw})
    metrics = metrics or PipelineMetrics()
    return PartitionRun(ctx or Ctx(), settings, finish, metrics.for_partition("t", "in", "0"),
                        redeliver=redeliver)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], what: str = "") -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_batch_with_an_unfinished_event_in_the_middle_checkpoints_below_it() -> None:
    finish, ctx = Finish(), Ctx()
    finish.gates[5] = asyncio.Event()
    run = make_run(finish, ctx, checkpoint_every=1)
    await run.submit(events(10))
    await until(lambda: len(finish.done) == 9, "all but 5 done")
    await run.checkpoint()
    assert max(ctx.checkpoints) == 4  # never past the unfinished one
    finish.gates[5].set()
    await until(lambda: len(finish.done) == 10, "5 done")
    await run.checkpoint()
    assert max(ctx.checkpoints) == 9
    await run.close(1)


async def test_an_event_whose_outputs_are_kept_holds_the_checkpoint_until_they_leave() -> None:
    finish, ctx = Finish(), Ctx()
    finish.keep.add(3)
    gate = asyncio.Event()

    async def redeliver(ctx: object, event: ReceivedEvent, delivery: Delivery) -> None:
        await gate.wait()

    run = make_run(finish, ctx, redeliver=redeliver, checkpoint_every=1)
    await run.submit(events(8))
    await until(lambda: len(finish.done) == 8, "all handled")
    await run.checkpoint()
    assert max(ctx.checkpoints) == 2
    gate.set()
    await until(lambda: ctx.checkpoints[-1] == 7, "checkpoint past the kept one")
    await run.close(1)


async def test_one_key_in_order_while_other_keys_overlap() -> None:
    finish = Finish()
    rng = random.Random(7)
    batch = events(60, key=lambda i: f"k{i % 3}")
    for e in batch:
        if rng.random() < 0.5:
            finish.gates[e.sequence_number] = asyncio.Event()

    async def open_gates() -> None:
        while len(finish.done) < 60:
            for gate in list(finish.gates.values()):
                if not gate.is_set() and rng.random() < 0.3:
                    gate.set()
            await asyncio.sleep(0.001)

    opener = asyncio.create_task(open_gates())
    run = make_run(finish)
    for start in range(0, 60, 20):
        await run.submit(batch[start:start + 20])
    await until(lambda: len(finish.done) == 60, "all done")
    await opener
    for k in range(3):
        mine = [s for s in finish.done if s % 3 == k]
        assert mine == sorted(mine)
        started = [s for s in finish.started if s % 3 == k]
        assert started == sorted(started)
    assert finish.most > 1  # keys did overlap
    await run.close(1)


async def test_events_waiting_behind_their_key_take_no_worker() -> None:
    finish = Finish()
    finish.gates[0] = asyncio.Event()
    run = make_run(finish, max_concurrency=2)
    # Two of key "a" behind a blocked one, then "b": b runs, the a's wait without a worker
    # (the bus still waits: four taken, three not finished, two workers).
    submitting = asyncio.create_task(run.submit(events(4, key=lambda i: "a" if i < 3 else "b")))
    await until(lambda: 3 in finish.done, "b done")
    assert finish.started == [0, 3] and not submitting.done()
    finish.gates[0].set()
    await asyncio.wait_for(submitting, 1)
    await until(lambda: len(finish.done) == 4, "the a's done")
    assert [s for s in finish.done if s < 3] == [0, 1, 2]
    await run.close(1)


async def test_submit_returns_once_at_most_max_concurrency_are_waiting_or_running() -> None:
    finish = Finish()
    for i in range(10):
        finish.gates[i] = asyncio.Event()
    metrics = PipelineMetrics()
    run = make_run(finish, metrics=metrics, max_concurrency=4)
    submitting = asyncio.create_task(run.submit(events(10)))
    await until(lambda: len(finish.started) == 4, "four running")
    assert finish.most == 4
    assert metrics.registry.get_sample_value("llmexec_events_in_flight", {"worker": "t"}) == 4
    for i in range(5):
        finish.gates[i].set()
    await asyncio.sleep(0.05)
    assert not submitting.done()  # 5 of 10 done: 5 still waiting or running
    finish.gates[5].set()
    await asyncio.wait_for(submitting, 1)
    for gate in finish.gates.values():
        gate.set()
    await until(lambda: len(finish.done) == 10, "all done")
    await asyncio.sleep(0.01)
    assert metrics.registry.get_sample_value("llmexec_events_in_flight", {"worker": "t"}) == 0
    await run.close(1)


async def test_checkpoints_are_batched_and_shutdown_covers_the_rest() -> None:
    finish, ctx = Finish(), Ctx()
    metrics = PipelineMetrics()
    run = make_run(finish, ctx, metrics, checkpoint_every=100)
    for start in range(0, 1050, 100):
        await run.submit(events(min(100, 1050 - start), start=start))
    await until(lambda: len(finish.done) == 1050, "all done")
    assert 1 <= len(ctx.checkpoints) <= 10
    assert ctx.checkpoints == sorted(ctx.checkpoints)
    assert metrics.registry.get_sample_value(
        "llmexec_events_in_flight", {"worker": "t"}) == 0
    await run.close(5)
    assert ctx.checkpoints[-1] == 1049
    assert metrics.registry.get_sample_value(
        "llmexec_checkpoint_lag_events", {"worker": "t", "hub": "in", "partition": "0"}) == 0
    assert metrics.registry.get_sample_value(
        "llmexec_checkpoints_total", {"worker": "t", "hub": "in"}) == len(ctx.checkpoints)


async def test_shutdown_lets_taken_work_finish_within_the_grace() -> None:
    finish, ctx = Finish(), Ctx()
    finish.gates[0] = asyncio.Event()
    run = make_run(finish, ctx)
    await run.submit(events(3, key=lambda i: "same"))
    asyncio.get_running_loop().call_later(0.1, finish.gates[0].set)
    await run.close(5)
    assert finish.done == [0, 1, 2] and ctx.checkpoints[-1] == 2


async def test_lost_ownership_abandons_at_once_without_a_checkpoint() -> None:
    finish, ctx = Finish(), Ctx()
    finish.gates[1] = asyncio.Event()
    run = make_run(finish, ctx)
    await run.submit(events(3, key=lambda i: "same"))
    await until(lambda: finish.started == [0, 1], "1 running")
    await asyncio.wait_for(run.close(None), 1)
    assert finish.done == [0] and ctx.checkpoints == []


async def test_close_ends_a_worker_whose_checkpoint_write_finished_as_it_was_cancelled() -> None:
    # The last batch's write is in flight when shutdown cancels the workers; 3.11's
    # asyncio.wait_for returns the finished write instead of raising the cancellation, and
    # a worker that kept looping would hang the close.
    finish, ctx = Finish(), Ctx()
    run = make_run(finish, ctx, max_concurrency=16, checkpoint_every=100)
    for start in range(0, 300, 100):
        await run.submit(events(100, start=start))
    await asyncio.wait_for(run.close(5), 2)
    assert ctx.checkpoints[-1] == 299
