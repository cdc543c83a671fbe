"""One request through the embedded pipeline (run_embedded: memory bus, both workers on the
real processor, the real sandbox, the real Anthropic SDK against the fake API) is ONE trace,
parented to the caller's span, holding every stage: publish, process, decode, each LLM
attempt (generation with tokens, validation), the repairs, the sandbox runs, checkpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmexec.embedded import run_embedded
from schemas import ExecutionRequest, ResultStatus, Route
from tests.fakes.anthropic_server import FakeAnthropic, tool_reply
from tests.fakes.llm_harness import llm_config
from tests.fakes.spans import Trace, spans

__all__ = ["spans"]
pytestmark = pytest.mark.slow


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


async def test_a_prompt_request_is_one_trace_under_the_callers_span(
        api: FakeAnthropic, spans: InMemorySpanExporter) -> None:
    api.on("cube", tool_reply("import socket\nprint(socket.gethostname())"),  # fails validation
           tool_reply("print(1 / 0)"),                                       # fails at run time
           tool_reply("print(3 ** 3)"))
    cfg = llm_config(api.base_url, processor={"checkpoint_every": 1})
    client = trace.get_tracer("a-client")
    with client.start_as_current_span("client.work") as root:
        got = await run_embedded(cfg, [ExecutionRequest(request_id="cube", prompt="cube of 3")])
    assert got["cube"].status is ResultStatus.SUCCEEDED and got["cube"].stdout == "27\n"

    t = Trace(list(spans.get_finished_spans()))
    assert t.trace_ids() == {root.get_span_context().trace_id}  # ONE trace, the caller's
    assert t.orphans() == []  # every span hangs off another span of it
    producer = t.named("requests publish")
    assert producer[0].parent is not None
    assert producer[0].parent.span_id == root.get_span_context().span_id
    assert {"requests process", "decode", "llm.attempt", "llm.repair", "llm.generate",
            "validate", "executions publish", "executions process", "sandbox.run",
            "results publish", "checkpoint"} <= t.names()
    # Three generations with usage, cached tokens included (the system prompt is cached).
    assert len(t.named("llm.generate")) == 3
    assert all(int(v) > 0  # type: ignore[call-overload]
               for v in t.attr("llm.generate", "gen_ai.usage.input_tokens"))
    cached = t.attr("llm.generate", "gen_ai.usage.cache_read_input_tokens")
    assert sum(int(v) for v in cached if v is not None) > 0  # type: ignore[call-overload]
    # Attempt 1, a validation repair (attempt 2), a runtime repair (attempt 3).
    assert sorted(t.attr("llm.repair", "llmexec.repair")) == ["runtime", "validation"]
    assert t.attr("validate", "llmexec.ok").count(False) == 1
    assert sorted(t.attr("sandbox.run", "llmexec.status")) == ["failed", "succeeded"]
    assert all(t.attr("sandbox.run", "llmexec.layers"))
    # Checkpoints on both hubs the workers consume.
    hubs = set(t.attr("checkpoint", "messaging.destination.name"))
    assert hubs == {"requests", "executions"}


async def test_a_heavy_request_has_its_job_submit_span(spans: InMemorySpanExporter) -> None:
    cfg = llm_config(None, api_key=None)
    with trace.get_tracer("a-client").start_as_current_span("client.heavy") as root:
        got = await run_embedded(cfg, [ExecutionRequest(request_id="h", code="print('big')",
                                                        route=Route.HEAVY)])
    assert got["h"].status is ResultStatus.SUCCEEDED
    t = Trace(list(spans.get_finished_spans()))
    assert t.trace_ids() == {root.get_span_context().trace_id}
    assert t.orphans() == []
    assert t.attr("heavy.submit", "llmexec.status") == ["succeeded"]
    assert {"requests process", "validate", "executions process", "results publish"} <= t.names()
