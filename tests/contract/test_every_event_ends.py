"""Every event ends, whatever its body holds: a property test on the processor itself, on
every bus backend. Hostile bodies (arbitrary bytes, nesting deeper than any parser likes,
numbers the parser refuses, strings that are not Unicode, kinds of the wrong type) and
handlers that crash or return outputs that cannot be encoded are mixed with good requests
on ONE partition; after each example the partition's checkpoint must reach its last event,
and every event must have ended exactly once (a result or a dead letter)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.bus.ports import Bus, OutgoingEvent
from pipeline.errors import TransientError
from pipeline.handling import Emit, EventContext
from pipeline.observability.metrics import PipelineMetrics
from pipeline.processor import Processor
from schemas import Artifact, Event, ExecutionRequest, ExecutionResult
from tests.contract.conftest import BusFactory
from tests.contract.test_processor_contract import HUBS
from tests.contract.test_processor_contract import settings as proc_settings

KEY = "fuzz"  # one partition key: every body lands on one partition, behind each other

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
BEHAVIOURS = ["print(1)", "crash", "unencodable", "transient"]


def _nested(depth: int, open_: str, close: str) -> bytes:
    return (open_ * depth + close * depth).encode()


hostile_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=60, max_value=200_000).map(lambda n: _nested(n, "[", "]")),
    st.integers(min_value=60, max_value=5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(min_value=60, max_value=3_000).map(
        lambda n: b'{"code": "print(1)", "inputs": ' + _nested(n, "[", "]") + b"}"),
    st.integers(min_value=4_400, max_value=20_000).map(
        lambda n: b'{"code": "print(1)", "inputs": 1' + b"0" * n + b"}"),
    st.sampled_from([b'{"code": "\\ud800"}', b'{"kind": []}', b'{"kind": {}}', b'{"kind": 5}',
                     b'{"kind": "claim_check", "ref": [1]}', b'{"code": "x", "request_id": "a\\u0000b"}',
                     b'{"code": "x", "request_id": "' + b"r" * 500 + b'"}', b'{"\\udfff": 1}',
                     b"\xff\xfe", b"", b"null", b'{"prompt": ""}']),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["kind", "code", "prompt", "request_id", "inputs", "limits", "route"]),
                    json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
)
good_requests = st.builds(
    lambda i, code: ExecutionRequest(request_id=f"ok-{i}", code=code).to_json_bytes(),
    st.integers(min_value=0, max_value=10**9), st.sampled_from(BEHAVIOURS))
bodies = st.lists(st.one_of(hostile_bodies, good_requests), min_size=1, max_size=6)


async def hostile_handler(event: Event, ctx: EventContext) -> Sequence[Emit]:
    assert isinstance(event, ExecutionRequest)
    if event.code == "crash":
        raise RuntimeError("handler bug")
    if event.code == "transient":
        raise TransientError("always flaky")
    artifacts = [Artifact(name="\ud800", size=0, sha256="0")] if event.code == "unencodable" else []
    return [Emit(HUBS.results, ExecutionResult(request_id=event.request_id, status="succeeded",  # type: ignore[arg-type]
                                               artifacts=artifacts))]


class Harness:
    """One processor on one bus for the whole property run: the partition's history grows
    with every example, and its checkpoint must always catch up with it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.metrics = PipelineMetrics()
        self.published = 0
        self.processor = Processor(
            name="fuzz", bus=bus, hub=HUBS.requests, consumer_group="workers",
            handler=hostile_handler, accepts=frozenset({"request"}), deadletter_hub=HUBS.deadletter,
            settings=proc_settings(transient_retries=1, checkpoint_interval_s=0.1),
            metrics=self.metrics, owner_id="fuzz")
        self.task = asyncio.create_task(self.processor.run())

    def ended(self) -> float:
        sample = self.metrics.registry.get_sample_value
        return sum(sample("llmexec_events_processed_total",
                          {"worker": "fuzz", "hub": HUBS.requests, "outcome": o}) or 0
                   for o in ("ok", "deadlettered"))

    async def checkpoint(self) -> int | None:
        cps = await self.bus.list_checkpoints(HUBS.requests, "workers")
        return max((c.sequence_number for c in cps), default=None)

    async def close(self) -> None:
        await self.processor.stop()
        await self.task


@pytest.fixture
async def harness(bus_factory: BusFactory) -> AsyncIterator[Harness]:
    h = Harness(bus_factory())
    yield h
    await h.close()


@pytest.mark.timeout(90)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(batch=bodies)
async def test_checkpoint_always_reaches_the_last_event(harness: Harness, batch: list[bytes]) -> None:
    await harness.bus.publisher().publish(HUBS.requests, [OutgoingEvent(b, partition_key=KEY) for b in batch])
    harness.published += len(batch)
    last = harness.published - 1  # one partition, sequence numbers from 0
    for _ in range(500):
        if harness.ended() == harness.published and await harness.checkpoint() == last:
            break
        await asyncio.sleep(0.02)
    assert harness.ended() == harness.published, "every event ends exactly once"
    assert await harness.checkpoint() == last, "the checkpoint reaches the last event"
    assert harness.processor.stuck() == []
