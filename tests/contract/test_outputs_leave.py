"""Outputs leave: an output the bus refuses is kept (the handler is not run again) and
re-published until it goes; later events of the same request wait behind it; intake pauses
while kept outputs pass their bound; a partition held back too long shows as stuck on
readiness and in the metric. On every bus backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from llmexec import assembly
from llmexec.config import AppConfig
from pipeline.bus.ports import Bus, OutgoingEvent
from pipeline.errors import BusUnavailableError
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from schemas import ExecutionRequest
from tests.contract.conftest import BusFactory
from tests.contract.test_processor_contract import (
    HUBS,
    HubReader,
    ScriptedHandler,
    checkpoint_reaches,
    eventually,
    settings,
)


class RefusingPublisher:
    """Refuses (like the bus would: BusUnavailableError) results of chosen requests until
    ``open()``; counts what it refused."""

    def __init__(self, bus: Bus, refuse: set[str]) -> None:
        self._real = bus.publisher()
        self._refuse = refuse
        self.refused = 0
        self.opened = asyncio.Event()

    def open(self) -> None:
        self.opened.set()

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        if (hub == HUBS.results and not self.opened.is_set()
                and any(e.properties.get("request_id") in self._refuse for e in events)):
            self.refused += 1
            raise BusUnavailableError("results hub unreachable")
        await self._real.publish(hub, events)

    async def close(self) -> None: ...


def processor(bus: Bus, handler: ScriptedHandler, publisher: RefusingPublisher,
              metrics: PipelineMetrics, **kw: float) -> Processor:
    return Processor(name="t", bus=bus, hub=HUBS.requests, consumer_group="workers",
                     handler=handler, accepts=frozenset({"request"}),  # type: ignore[arg-type]
                     deadletter_hub=HUBS.deadletter, settings=settings(**kw),
                     publisher=publisher, metrics=metrics, owner_id="p1")


def request(rid: str, code: str) -> OutgoingEvent:
    return OutgoingEvent(ExecutionRequest(request_id=rid, code=code).to_json_bytes(),
                         partition_key="p")


async def test_a_refused_output_is_kept_and_republished_and_its_request_waits_behind_it(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    results = HubReader(bus, HUBS.results)
    handler = ScriptedHandler()
    publisher = RefusingPublisher(bus, {"r2"})
    metrics = PipelineMetrics()
    proc = processor(bus, handler, publisher, metrics, stuck_after_s=0.2)
    task = asyncio.create_task(proc.run())
    # r2 twice: its second event must not be handled before the first one's output left.
    await bus.publisher().publish(HUBS.requests, [
        request("r0", "a"), request("r1", "a"), request("r2", "first"), request("r3", "a"),
        request("r2", "second"), request("r4", "a")])
    # r3 goes on; r4 shares the partition key with the waiting second r2, so it keeps
    # its place behind it (per-key order), like every event of a request would.
    await eventually(lambda: {"r0", "r1", "r3"} <= set(handler.finished), what="others")
    await eventually(lambda: publisher.refused >= 5, what="re-publishing with backoff")
    assert handler.calls["r2"] == 1  # kept, not recomputed; the second r2 waits
    assert "r4" not in handler.started
    await checkpoint_reaches(bus, 1)  # held below r2 while its output is refused

    await eventually(lambda: bool(proc.stuck()), what="stuck report")
    (report,) = proc.stuck()
    assert "event 2 unfinished" in report.reason and "results hub unreachable" in report.reason
    stuck_age = metrics.registry.get_sample_value(
        "llmexec_partition_stuck_seconds", {"worker": "t", "hub": HUBS.requests,
                                            "partition": report.partition_id})
    assert stuck_age is not None and stuck_age >= 0.2
    _, ready = assembly.llm_probes(AppConfig.build(), bus, proc, None)
    ok, detail = ready()
    assert not ok and detail["stuck"][0]["partition"] == report.partition_id

    publisher.open()
    await eventually(lambda: handler.calls["r2"] == 2, what="second r2 after the first left")
    await checkpoint_reaches(bus, 5)
    assert proc.stuck() == [] and ready()[0]
    await results.wait_for(6)
    r2_stdout = [e.body for e in results.events if b'"r2"' in e.body]
    assert len(r2_stdout) == 2 and b'"first"' in r2_stdout[0] and b'"second"' in r2_stdout[1]
    await proc.stop()
    await task
    await results.close()


async def test_intake_pauses_while_kept_outputs_pass_their_bound(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    handler = ScriptedHandler()
    publisher = RefusingPublisher(bus, {"r0"})
    metrics = PipelineMetrics()
    proc = processor(bus, handler, publisher, metrics, unpublished_max_bytes=1024)
    task = asyncio.create_task(proc.run())
    await bus.publisher().publish(HUBS.requests, [request("r0", "a")])
    # Kept once the bounded retries are spent (not at the first refusal): wait for that.
    await eventually(lambda: metrics.registry.get_sample_value(
        "llmexec_unpublished_bytes", {"worker": "t"}) == 1024, what="r0 kept")
    assert publisher.refused >= 3  # the first try and TRANSIENT_RETRIES=2 retries
    await bus.publisher().publish(HUBS.requests, [request("r1", "a")])
    # An absence: give a processor that did not pause ample time to start r1.
    await asyncio.sleep(0.5)
    assert "r1" not in handler.started
    publisher.open()
    await eventually(lambda: "r1" in handler.finished, what="intake resumed")
    await checkpoint_reaches(bus, 1)
    await proc.stop()
    await task


async def test_an_exception_escaping_publish_dead_letters_the_event_with_the_evidence(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    real = bus.publisher()

    class BuggyPublisher:
        async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
            if hub == HUBS.results and any(e.properties.get("request_id") == "bug" for e in events):
                raise ValueError("publisher bug")
            await real.publish(hub, events)

        async def close(self) -> None: ...

    dlq = HubReader(bus, HUBS.deadletter)
    handler = ScriptedHandler()
    proc = Processor(name="t", bus=bus, hub=HUBS.requests, consumer_group="workers",
                     handler=handler, accepts=frozenset({"request"}),  # type: ignore[arg-type]
                     deadletter_hub=HUBS.deadletter, settings=settings(),
                     publisher=BuggyPublisher(), owner_id="p1")  # type: ignore[arg-type]
    task = asyncio.create_task(proc.run())
    await bus.publisher().publish(HUBS.requests, [request("bug", "a"), request("fine", "a")])
    await dlq.wait_for(1)
    await checkpoint_reaches(bus, 1)
    (record,) = dlq.decoded()
    assert record.kind == "deadletter" and record.request_id == "bug"  # type: ignore[union-attr]
    assert "ValueError('publisher bug')" in record.reason and "Traceback" in record.reason  # type: ignore[union-attr]
    assert handler.finished == ["bug", "fine"]
    await proc.stop()
    await task
    await dlq.close()
