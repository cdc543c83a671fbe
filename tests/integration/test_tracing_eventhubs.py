"""Traces over the Event Hubs backend: the real SDK against the loopback peer, checkpoints
in Azurite. A client that publishes with its own W3C ``traceparent`` (or only the Azure
SDK's ``Diagnostic-Id``) property sees the platform's spans in its trace: ONE trace per
request, across the three hubs, through both workers."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from consumers.results import ResultFollower
from llmexec.embedded import running_pipeline
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import OutgoingEvent
from pipeline.bus.settings import BusSettings
from schemas import ExecutionRequest, HubNames, ResultStatus
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip
from tests.fakes.anthropic_server import FakeAnthropic, tool_reply
from tests.fakes.llm_harness import llm_config
from tests.fakes.spans import Trace, spans

__all__ = ["spans"]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
HUBS = HubNames()


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


@pytest.fixture
async def peer() -> AsyncIterator[EventHubsPeer]:
    async with EventHubsPeer(hubs={name: 2 for name in HUBS.all()}) as running:
        yield running
    gc.collect()


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


def raw_request(request_id: str, prompt: str | None, code: str | None,
                properties: dict[str, str]) -> OutgoingEvent:
    """What another system publishes with the plain SDK: the body and its own properties."""
    body = ExecutionRequest(request_id=request_id, prompt=prompt, code=code).to_json_bytes()
    return OutgoingEvent(body, partition_key=request_id, properties=properties)


async def test_each_request_is_one_trace_in_the_publishers_trace(
        peer: EventHubsPeer, azurite: str, api: FakeAnthropic,
        spans: InMemorySpanExporter) -> None:
    api.on("cube", tool_reply("import socket\nprint(socket.gethostname())"),
           tool_reply("print(1 / 0)"), tool_reply("print(3 ** 3)"))
    cfg = llm_config(api.base_url, processor={"checkpoint_every": 1})
    bus = build_bus(BusSettings(
        event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
        storage_connection_string=azurite,  # type: ignore[arg-type]
        checkpoint_container=f"cp-{uuid.uuid4().hex[:10]}",
        eventhub_load_balancing_interval_s=0.5, eventhub_ownership_expiry_s=3))
    client = trace.get_tracer("another-system")
    w3c, azure = {}, {}
    with client.start_as_current_span("publish cube") as w3c_root:
        TraceContextTextMapPropagator().inject(w3c)
    with client.start_as_current_span("publish legacy") as azure_root:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        azure["Diagnostic-Id"] = carrier["traceparent"]  # what the Azure SDK's tracing sets
    spans.clear()  # only the platform's spans from here on
    try:
        async with running_pipeline(cfg, bus=bus) as pipeline:
            follower = ResultFollower(pipeline.bus, HUBS, consumer_group="trace-e2e")
            try:
                await pipeline.bus.publisher().publish(HUBS.requests, [
                    raw_request("cube", "cube of 3", None, w3c),
                    raw_request("legacy", None, "print('legacy')", azure)])
                got = await follower.wait_for(["cube", "legacy"], timeout_s=90)
            finally:
                await follower.close()
    finally:
        await bus.close()
    assert got["cube"].status is ResultStatus.SUCCEEDED and got["cube"].stdout == "27\n"
    assert got["legacy"].stdout == "legacy\n"

    finished = list(spans.get_finished_spans())
    for root, stages in ((w3c_root, {
            "requests process", "decode", "llm.attempt", "llm.repair", "llm.generate",
            "validate", "executions publish", "executions process", "sandbox.run",
            "results publish", "checkpoint"}),
            (azure_root, {"requests process", "decode", "validate", "executions publish",
                          "executions process", "sandbox.run", "results publish",
                          "checkpoint"})):
        ctx = root.get_span_context()
        t = Trace([s for s in finished if s.context and s.context.trace_id == ctx.trace_id])
        assert stages <= t.names(), t.names()
        first = t.named("requests process")
        # The platform's first span is the publisher's span's child, by the property.
        assert [s.parent.span_id for s in first if s.parent and s.parent.span_id == ctx.span_id]
        ids = {s.context.span_id for s in t.spans if s.context} | {ctx.span_id}
        assert [s.name for s in t.spans if s.parent and s.parent.span_id not in ids] == []
    cube = Trace([s for s in finished if s.context
                  and s.context.trace_id == w3c_root.get_span_context().trace_id])
    assert sorted(cube.attr("llm.repair", "llmexec.repair")) == ["runtime", "validation"]
    assert sorted(cube.attr("sandbox.run", "llmexec.status")) == ["failed", "succeeded"]
    # Nothing the platform did for these two requests fell outside their two traces.
    mine = {w3c_root.get_span_context().trace_id, azure_root.get_span_context().trace_id}
    stray = [s.name for s in finished if s.context and s.context.trace_id not in mine]
    assert all(not n.endswith((" process", " publish")) for n in stray), stray
