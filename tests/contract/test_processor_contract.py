"""The processor's promises (ordering, checkpoints, retries, dead letters, balancing),
on every bus backend."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from consumers.dedupe import Deduplicator
from pipeline.bus.ports import Bus, OutgoingEvent, PartitionContext, ReceivedEvent
from pipeline.errors import BusUnavailableError, PermanentError, TransientError
from pipeline.handling import Emit, EventContext
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from pipeline.settings import ProcessorSettings
from schemas import DeadLetter, Event, ExecutionRequest, ExecutionResult, HubNames, decode_event
from tests.contract.conftest import BusFactory

HUBS = HubNames("in", "exec", "out", "dlq")


def settings(**kw: float) -> ProcessorSettings:
    base = {"transient_retries": 2, "max_concurrency": 8, "checkpoint_every": 1000,
            "checkpoint_interval_s": 0.1, "retry_backoff_s": 0.001, "retry_backoff_max_s": 0.01,
            "shutdown_grace_s": 2.0}
    return ProcessorSettings(**{**base, **kw})  # type: ignore[arg-type]


class ScriptedHandler:
    """Echoes each request as a result; scripted to block, fail or be slow per request id."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.block: dict[str, asyncio.Event] = {}
        self.transient: set[str] = set()
        self.permanent: set[str] = set()
        self.delay: dict[str, float] = {}

    async def __call__(self, event: Event, ctx: EventContext) -> Sequence[Emit]:
        assert isinstance(event, ExecutionRequest)
        rid = event.request_id
        self.calls[rid] += 1
        self.started.append(rid)
        if rid in self.block:
            await self.block[rid].wait()
        await asyncio.sleep(self.delay.get(rid, 0))
        if rid in self.transient:
            raise TransientError(f"flaky {rid}")
        if rid in self.permanent:
            raise PermanentError(f"cannot ever handle {rid}")
        self.finished.append(rid)
        return [Emit(HUBS.results, ExecutionResult(request_id=rid, attempt=1, status="succeeded",  # type: ignore[arg-type]
                                                   stdout=event.code or ""))]


def make_processor(bus: Bus, handler: Callable[..., object], *, owner: str = "p1",
                   metrics: PipelineMetrics | None = None, group: str = "workers",
                   **kw: float) -> Processor:
    return Processor(name="test", bus=bus, hub=HUBS.requests, consumer_group=group,
                     handler=handler, accepts=frozenset({"request"}),  # type: ignore[arg-type]
                     deadletter_hub=HUBS.deadletter, settings=settings(**kw), owner_id=owner,
                     metrics=metrics)


async def publish_requests(bus: Bus, ids: Sequence[str], key: Callable[[str], str] = str) -> None:
    events = [OutgoingEvent(ExecutionRequest(request_id=i, code=f"print('{i}')").to_json_bytes(),
                            partition_key=key(i)) for i in ids]
    await bus.publisher().publish(HUBS.requests, events)


class HubReader:
    """Reads a hub from the start in its own consumer group (what a downstream consumer sees)."""

    def __init__(self, bus: Bus, hub: str) -> None:
        self.events: list[ReceivedEvent] = []
        self._sub = bus.subscribe(hub, f"reader-{hub}")
        self._task = asyncio.create_task(self._sub.run(self))

    async def on_open(self, ctx: PartitionContext) -> None: ...
    async def on_close(self, ctx: PartitionContext, reason: str) -> None: ...

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        self.events.extend(events)

    def decoded(self) -> list[Event]:
        return [decode_event(e.body) for e in self.events]

    async def wait_for(self, n: int, timeout: float = 10) -> None:
        for _ in range(int(timeout / 0.02)):
            if len(self.events) >= n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {n} events, got {len(self.events)}")

    async def close(self) -> None:
        await self._sub.stop()
        await self._task


async def checkpoints(bus: Bus) -> dict[str, int]:
    return {c.partition_id: c.sequence_number for c in await bus.list_checkpoints(HUBS.requests, "workers")}


async def eventually(cond: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def checkpoint_reaches(bus: Bus, seq: int, timeout: float = 10) -> None:
    """Wait until the one partition's checkpoint is at ``seq`` (a condition, not a sleep)."""
    for _ in range(int(timeout / 0.02)):
        if list((await checkpoints(bus)).values()) == [seq]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"checkpoint never reached {seq}: {await checkpoints(bus)}")


async def test_events_of_one_key_are_handled_in_order_under_concurrency(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    handler = ScriptedHandler()
    ids = [f"r{i}" for i in range(30)]
    for i, rid in enumerate(ids):
        handler.delay[rid] = 0.03 if i % 3 == 0 else 0.0
    # Three requests' worth of events per key: the key is what must stay ordered.
    await publish_requests(bus, ids, key=lambda rid: f"k{int(rid[1:]) % 3}")
    proc = make_processor(bus, handler)
    task = asyncio.create_task(proc.run())
    await eventually(lambda: len(handler.finished) == 30, what="all handled")
    await proc.stop()
    await task
    for k in range(3):
        mine = [r for r in ids if int(r[1:]) % 3 == k]
        assert [r for r in handler.finished if r in mine] == mine
    # ...while different keys did overlap (bounded concurrency is real).
    assert handler.finished != sorted(handler.finished, key=lambda r: int(r[1:]))


async def test_checkpoint_never_passes_an_unfinished_event(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    handler = ScriptedHandler()
    handler.block["r3"] = asyncio.Event()
    ids = [f"r{i}" for i in range(8)]
    await publish_requests(bus, ids, key=lambda _: "same-partition")
    proc = make_processor(bus, handler)
    task = asyncio.create_task(proc.run())
    # r0..r2 done, r3 blocked; everything after waits behind r3 (same key) — checkpoint at r2.
    await eventually(lambda: len(handler.finished) == 3, what="three finished")
    await checkpoint_reaches(bus, 2)  # the finished prefix; r4.. wait behind r3 (same key)
    (seq,) = (await checkpoints(bus)).values()
    assert seq == 2
    handler.block["r3"].set()
    await eventually(lambda: len(handler.finished) == 8, what="rest finished")
    await proc.stop()
    await task
    assert list((await checkpoints(bus)).values()) == [7]


async def test_checkpoint_stops_below_an_event_whose_output_cannot_be_published(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    real = bus.publisher()

    class FlakyPublisher:
        async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
            if any(b'"r2"' in e.body for e in events) and hub == HUBS.results:
                raise BusUnavailableError("results hub unreachable")
            await real.publish(hub, events)

        async def close(self) -> None: ...

    handler = ScriptedHandler()
    await publish_requests(bus, [f"r{i}" for i in range(5)], key=lambda _: "p")
    proc = Processor(name="t", bus=bus, hub=HUBS.requests, consumer_group="workers",
                     handler=handler, accepts=frozenset({"request"}),
                     deadletter_hub=HUBS.deadletter, settings=settings(), publisher=FlakyPublisher())
    task = asyncio.create_task(proc.run())
    await eventually(lambda: len(handler.finished) == 5, what="all handled")
    await checkpoint_reaches(bus, 1)  # the prefix below r2, flushed by the interval
    await proc.stop()
    await task
    # r2 was handled but its result never left: never checkpointed past it.
    assert list((await checkpoints(bus)).values()) == [1]


async def test_restart_rehandles_only_the_unfinished_window_and_dedupe_gives_one_each(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    results = HubReader(bus, HUBS.results)
    first = ScriptedHandler()
    first.block["r5"] = asyncio.Event()  # never released: "crash" while it is in flight
    ids = [f"r{i}" for i in range(12)]
    await publish_requests(bus, ids, key=lambda r: "p")
    proc = make_processor(bus, first, max_concurrency=4)
    task = asyncio.create_task(proc.run())
    await eventually(lambda: len(first.finished) == 5, what="r0..r4")
    await checkpoint_reaches(bus, 4)
    await proc.subscription.abandon()  # type: ignore[attr-defined]
    await task
    cp = await checkpoints(bus)
    assert list(cp.values()) == [4]

    second = ScriptedHandler()
    proc2 = make_processor(bus, second, owner="p2")
    task2 = asyncio.create_task(proc2.run())
    await eventually(lambda: len(second.finished) == 7, what="r5..r11 after restart")
    await proc2.stop()
    await task2
    assert sorted(second.calls) == sorted(ids[5:])  # nothing finished before was redone
    await results.wait_for(12)
    dedupe = Deduplicator()
    unique = [r for r in results.decoded() if dedupe.first_time(r.dedupe_key)]  # type: ignore[union-attr]
    assert sorted(r.request_id for r in unique) == sorted(ids)  # type: ignore[union-attr]
    await results.close()


async def test_transient_failures_retry_transient_retries_times_then_dead_letter(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    dlq = HubReader(bus, HUBS.deadletter)
    handler = ScriptedHandler()
    handler.transient.add("flaky")
    handler.permanent.add("doomed")
    await publish_requests(bus, ["flaky", "doomed", "fine"])
    proc = make_processor(bus, handler, transient_retries=3)
    task = asyncio.create_task(proc.run())
    await dlq.wait_for(2)
    await eventually(lambda: "fine" in handler.finished, what="fine handled")
    await proc.stop()
    await task
    assert handler.calls["flaky"] == 4  # the first try + TRANSIENT_RETRIES retries
    assert handler.calls["doomed"] == 1  # permanent: never retried
    records = {r.request_id: r for r in dlq.decoded()}  # type: ignore[union-attr]
    flaky, doomed = records["flaky"], records["doomed"]
    assert isinstance(flaky, DeadLetter) and isinstance(doomed, DeadLetter)
    assert flaky.attempts == 4 and "TRANSIENT_RETRIES=3" in flaky.reason and "flaky flaky" in flaky.reason
    assert doomed.reason == "cannot ever handle doomed" and doomed.error_type == "PermanentError"
    assert json.loads(base64.b64decode(flaky.body_b64))["request_id"] == "flaky"
    assert flaky.source_hub == HUBS.requests and flaky.consumer_group == "workers"
    await dlq.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "malformed event: body is not JSON"),
        (b'{"kind": "result", "request_id": "x", "status": "succeeded"}', "unexpected event kind 'result'"),
        (b'{"prompt": ""}', "non-empty 'prompt' or 'code'"),
    ],
)
async def test_malformed_event_goes_to_dead_letter_and_the_pipeline_goes_on(
    bus_factory: BusFactory, body: bytes, reason: str,
) -> None:
    bus = bus_factory()
    dlq = HubReader(bus, HUBS.deadletter)
    handler = ScriptedHandler()
    await bus.publisher().publish(HUBS.requests, [OutgoingEvent(body, partition_key="k")])
    await publish_requests(bus, ["after"], key=lambda _: "k")
    proc = make_processor(bus, handler)
    task = asyncio.create_task(proc.run())
    await dlq.wait_for(1)
    await eventually(lambda: handler.finished == ["after"], what="next event handled")
    await proc.stop()
    await task
    (record,) = dlq.decoded()
    assert isinstance(record, DeadLetter)
    assert reason in record.reason
    assert record.body == body
    assert list((await checkpoints(bus)).values()) == [1]  # both events done, nothing lost
    await dlq.close()


async def test_two_processors_split_partitions_and_one_takes_over(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    ids = await bus.partition_ids(HUBS.requests)
    h1, h2 = ScriptedHandler(), ScriptedHandler()
    p1, p2 = make_processor(bus, h1, owner="a"), make_processor(bus, h2, owner="b")
    t1, t2 = asyncio.create_task(p1.run()), asyncio.create_task(p2.run())
    await eventually(lambda: len(p1.owned_partitions()) == len(p2.owned_partitions()) == len(ids) // 2,
                     what="even split")
    first = [f"a{i}" for i in range(40)]
    await publish_requests(bus, first)
    await eventually(lambda: len(h1.finished) + len(h2.finished) == 40, what="first wave")
    assert h1.finished and h2.finished  # both did real work
    await p1.stop()
    await t1
    await eventually(lambda: p2.owned_partitions() == frozenset(ids), what="takeover")
    second = [f"b{i}" for i in range(40)]
    await publish_requests(bus, second)
    await eventually(lambda: set(second) <= set(h2.finished), what="second wave on survivor")
    await p2.stop()
    await t2
    assert not set(second) & set(h1.calls)


async def test_shutdown_lets_in_flight_work_finish_then_checkpoints(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    handler = ScriptedHandler()
    handler.delay["slow"] = 0.5
    await publish_requests(bus, ["slow"], key=lambda _: "p")
    proc = make_processor(bus, handler, checkpoint_interval_s=60)
    task = asyncio.create_task(proc.run())
    await eventually(lambda: "slow" in handler.started, what="slow started")
    await proc.stop(grace_s=5)
    await task
    assert handler.finished == ["slow"]
    assert list((await checkpoints(bus)).values()) == [0]


async def test_checkpoints_are_batched_not_per_event(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    handler = ScriptedHandler()
    ids = [f"r{i}" for i in range(500)]
    await publish_requests(bus, ids, key=lambda _: "p")
    metrics = PipelineMetrics()
    proc = make_processor(bus, handler, checkpoint_every=100, checkpoint_interval_s=60,
                          metrics=metrics)
    task = asyncio.create_task(proc.run())
    await eventually(lambda: len(handler.finished) == 500, what="all")
    await proc.stop()
    await task
    writes = metrics.registry.get_sample_value(
        "llmexec_checkpoints_total", {"worker": "test", "hub": HUBS.requests})
    assert writes is not None and 1 <= writes <= 6, writes
    assert list((await checkpoints(bus)).values()) == [499]


async def test_a_request_without_an_id_gets_its_position_s_id_again_when_redelivered(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    await bus.publisher().publish(HUBS.requests, [
        OutgoingEvent(b'{"code": "print(1)"}', partition_key="k"),
        OutgoingEvent(b'{"code": "print(2)", "request_id": "own"}', partition_key="k")])
    seen: list[list[str]] = []
    for owner in ("p1", "p2"):  # the second reads the same events again, from the start
        handler = ScriptedHandler()
        proc = make_processor(bus, handler, owner=owner, group=owner)
        task = asyncio.create_task(proc.run())
        await eventually(lambda h=handler: len(h.finished) == 2, what="both requests")  # type: ignore[misc]
        await proc.stop()
        await task
        seen.append(handler.finished)
    derived, own = seen[0]
    assert own == "own" and derived not in ("", "own") and len(derived) == 32
    assert seen[1] == seen[0]
