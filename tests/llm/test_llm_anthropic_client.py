"""The Anthropic adapter with the real SDK against the local Messages API server:
what it sends, how it reads a tool call, how every API failure is classified."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from llm_worker.anthropic_client import AnthropicGenerator
from llm_worker.generator import GenerationTask, LlmPermanentError, LlmTransientError
from llm_worker.settings import LlmSettings
from pipeline.settings import ExecutionSettings
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Reply,
    error_reply,
    text_reply,
    tool_reply,
)

TASK = GenerationTask(prompt="sum the squares of 1..100")


@pytest.fixture
async def generator(api: FakeAnthropic) -> AsyncIterator[AnthropicGenerator]:
    llm = LlmSettings(llm_api_key=SecretStr("sk-test"), anthropic_base_url=api.base_url,
                      llm_model="claude-test-model", llm_max_tokens=2048, llm_timeout_s=1.0,
                      llm_max_retry_after_s=30)
    gen = AnthropicGenerator(llm, ExecutionSettings())
    yield gen
    await gen.close()


async def test_success_sends_a_cached_system_prompt_and_a_forced_tool_call(
        api: FakeAnthropic, generator: AnthropicGenerator) -> None:
    api.script(tool_reply("print(338350)", route="light", expected_runtime_s=0.1,
                          packages=[]))
    gen = await generator.generate(TASK)
    again = await generator.generate(TASK)

    assert gen.code == "print(338350)" and gen.submission.route == "light"
    assert gen.usage.model == "claude-test-model"
    assert gen.usage.output_tokens == 120
    # The prefix (tools + system) is written once, then read; only the task is uncached.
    assert gen.usage.cache_write_tokens == again.usage.cache_read_tokens >= 2048
    assert gen.usage.cache_read_tokens == again.usage.cache_write_tokens == 0
    assert 0 < gen.usage.input_tokens == again.usage.input_tokens < 50
    sent = api.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["x-stainless-retry-count"] == "0"
    body = sent.body
    assert body["model"] == "claude-test-model" and body["max_tokens"] == 2048
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["tool_choice"]["type"] == "tool" and body["tool_choice"]["name"] == "submit_code"
    assert [t["name"] for t in body["tools"]] == ["submit_code"]
    assert "sum the squares" in sent.task_text
    assert api.requests[1].system_text == sent.system_text


@pytest.mark.parametrize("reply", [
    text_reply("Sure! print(1)"),
    tool_reply("print(1)", route="medium"),
    Reply(content=[{"type": "tool_use", "name": "submit_code", "input": {"code": "print("}}],
          stop_reason="max_tokens"),
])
async def test_an_answer_that_does_not_follow_the_tool_is_rejected_as_transient(
        api: FakeAnthropic, generator: AnthropicGenerator, reply: Reply) -> None:
    api.script(reply)
    with pytest.raises(LlmTransientError) as info:
        await generator.generate(TASK)
    assert info.value.error_class == "malformed"
    assert info.value.usage is not None and info.value.usage.output_tokens == 120
    if reply.stop_reason == "max_tokens":
        assert "LLM_MAX_TOKENS" in str(info.value)


@pytest.mark.parametrize(("status", "headers", "error_class", "delay"), [
    (429, {"retry-after": "7"}, "rate_limited", 7.0),
    (429, {"retry-after": "3600"}, "rate_limited", 30.0),  # capped: LLM_MAX_RETRY_AFTER_S
    (429, {"retry-after-ms": "250"}, "rate_limited", 0.25),
    (529, {}, "overloaded", None),
    (500, {}, "server_error", None),
    (503, {"retry-after": "2"}, "server_error", 2.0),
    (408, {}, "timeout", None),
])
async def test_throttling_and_server_errors_are_transient_with_retry_after(
        api: FakeAnthropic, generator: AnthropicGenerator, status: int,
        headers: dict[str, str], error_class: str, delay: float | None) -> None:
    reply = error_reply(status, "try later")
    reply.headers = headers
    api.script(reply)
    with pytest.raises(LlmTransientError) as info:
        await generator.generate(TASK)
    assert info.value.error_class == error_class
    assert info.value.delay == delay
    assert f"error {status}" in str(info.value) and "try later" in str(info.value)
    assert len(api.requests) == 1  # the SDK's own retries are off


@pytest.mark.parametrize(("status", "error_class", "hint"), [
    (400, "bad_request", "rejected the request"),
    (401, "authentication", "LLM_API_KEY"),
    (403, "permission", "may not use this model"),
    (404, "not_found", "LLM_MODEL='claude-test-model'"),
    (413, "request_too_large", "too large"),
])
async def test_client_errors_are_permanent_with_a_clear_message(
        api: FakeAnthropic, generator: AnthropicGenerator, status: int, error_class: str,
        hint: str) -> None:
    api.script(error_reply(status, "the API says no"))
    with pytest.raises(LlmPermanentError) as info:
        await generator.generate(TASK)
    assert info.value.error_class == error_class and info.value.status == status
    assert "the API says no" in str(info.value) and hint in str(info.value)
    assert len(api.requests) == 1


async def test_a_slow_api_times_out_as_transient(
        api: FakeAnthropic, generator: AnthropicGenerator) -> None:
    api.script(tool_reply("print(1)", delay_s=3))
    started = time.monotonic()
    with pytest.raises(LlmTransientError) as info:
        await generator.generate(TASK)
    assert info.value.error_class == "timeout" and "LLM_TIMEOUT_S" in str(info.value)
    assert time.monotonic() - started < 2.5


async def test_an_unreachable_api_is_transient() -> None:
    async with FakeAnthropic() as gone:
        url = gone.base_url
    gen = AnthropicGenerator(LlmSettings(llm_api_key=SecretStr("k"), anthropic_base_url=url),
                             ExecutionSettings())
    try:
        with pytest.raises(LlmTransientError) as info:
            await gen.generate(TASK)
        assert info.value.error_class == "connection"
    finally:
        await gen.close()


def test_no_key_means_not_configured() -> None:
    with pytest.raises(LlmPermanentError, match="LLM not configured"):
        AnthropicGenerator(LlmSettings(llm_api_key=None), ExecutionSettings())
