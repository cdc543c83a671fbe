"""Prompt caching: the fake reports it the way the API does (so cache figures from it mean
something), and the adapter's requests are shaped so that the API's cache hits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from pydantic import SecretStr

from llm_worker.anthropic_client import AnthropicGenerator
from llm_worker.generator import GenerationTask
from llm_worker.prompt import SUBMIT_CODE_TOOL, system_prompt
from llm_worker.settings import LlmSettings
from pipeline.settings import ExecutionSettings
from schemas import AttemptRecord, ErrorInfo, ResultStatus
from tests.fakes.anthropic_server import FakeAnthropic, Recorded, Reply, tool_reply
from tests.fakes.prompt_cache import (
    DEFAULT_MIN_CACHEABLE,
    PromptCache,
    estimate_tokens,
    min_cacheable_tokens,
    render,
)

LONG = "All work and no play makes Jack a dull boy. " * 200  # ~2,200 tokens estimated
SHORT = "You write Python programs."
CACHED = {"type": "ephemeral"}


def body(system: str, task: str = "task 1", *, model: str = "claude-test-model",
         system_cache: bool = True, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": system}
    if system_cache:
        block["cache_control"] = CACHED
    return {"model": model, "max_tokens": 100, "tools": tools or [],
            "system": [block], "messages": [{"role": "user", "content": task}]}


# -- the fake's cache model ------------------------------------------------------------------

def test_below_the_minimum_nothing_is_cached_and_every_token_is_input() -> None:
    cache = PromptCache()
    for _ in range(2):
        usage = cache.usage(body(SHORT))
        cache.commit(usage)
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0
        assert usage.input_tokens == estimate_tokens(SHORT) + estimate_tokens("task 1")


def test_the_minimum_is_the_models() -> None:
    assert min_cacheable_tokens("claude-sonnet-4-5-20250929") == 1024
    assert min_cacheable_tokens("claude-opus-4-6") == 4096
    assert min_cacheable_tokens("claude-3-5-haiku-latest") == 2048
    assert min_cacheable_tokens("claude-sonnet-5-5") == DEFAULT_MIN_CACHEABLE == 2048
    prefix = "x" * 4 * 1500  # 1,500 tokens: cacheable on Sonnet 4.5, not on Opus 4.6
    assert PromptCache().usage(body(prefix, model="claude-sonnet-4-5")
                               ).cache_creation_input_tokens == 1500
    assert PromptCache().usage(body(prefix, model="claude-opus-4-6")).input_tokens == 1502


def test_written_once_then_read_by_exact_prefix_whatever_follows() -> None:
    cache = PromptCache()
    first = cache.usage(body(LONG, "task 1"))
    cache.commit(first)
    again = cache.usage(body(LONG, "a different, longer task 2"))
    prefix = estimate_tokens(LONG)
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (prefix, 0)
    assert (again.cache_creation_input_tokens, again.cache_read_input_tokens) == (0, prefix)
    assert again.input_tokens == estimate_tokens("a different, longer task 2")


@pytest.mark.parametrize("changed", [
    body(LONG + " ", tools=[SUBMIT_CODE_TOOL]),  # one byte more in the system prompt
    body(LONG, model="claude-test-model-2", tools=[SUBMIT_CODE_TOOL]),  # per model
    body(LONG),  # tools render before system: without them, another prefix
    body(LONG, tools=[{**SUBMIT_CODE_TOOL, "description": "Submit it."}]),
    body(LONG, tools=[dict(reversed(SUBMIT_CODE_TOOL.items()))]),  # same JSON, other bytes
])
def test_a_different_prefix_misses_and_writes_anew(changed: dict[str, Any]) -> None:
    cache = PromptCache()
    cache.commit(cache.usage(body(LONG, tools=[SUBMIT_CODE_TOOL])))
    usage = cache.usage(changed)
    assert usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens > 0


def test_without_a_breakpoint_nothing_is_cached() -> None:
    cache = PromptCache()
    cache.commit(cache.usage(body(LONG, system_cache=False)))
    usage = cache.usage(body(LONG, system_cache=False))
    assert usage.cache_read_input_tokens == usage.cache_creation_input_tokens == 0


def test_a_breakpoint_covers_everything_before_it_tools_included() -> None:
    tools = [{**SUBMIT_CODE_TOOL, "cache_control": CACHED}]
    cache = PromptCache()
    usage = cache.usage(body(LONG, tools=tools))
    tool_tokens = render(body(LONG, tools=[SUBMIT_CODE_TOOL]))[0].tokens
    # The tool alone is below the minimum: only the system breakpoint's prefix is written,
    # and it counts the tool's tokens too.
    assert usage.cache_creation_input_tokens == tool_tokens + estimate_tokens(LONG)
    assert len(usage.writes) == 1


def test_a_later_breakpoint_writes_only_what_follows_the_cached_part() -> None:
    cache = PromptCache()
    cache.commit(cache.usage(body(LONG)))
    more = body(LONG)
    more["messages"] = [{"role": "user", "content": [
        {"type": "text", "text": LONG, "cache_control": CACHED},
        {"type": "text", "text": "task 9"}]}]
    usage = cache.usage(more)
    assert usage.cache_read_input_tokens == estimate_tokens(LONG)
    assert usage.cache_creation_input_tokens == estimate_tokens(LONG)
    assert usage.input_tokens == estimate_tokens("task 9")


def test_entries_expire_and_reads_refresh_them() -> None:
    now = [0.0]
    cache = PromptCache(clock=lambda: now[0])
    cache.commit(cache.usage(body(LONG)))
    now[0] = 299.0
    assert cache.usage(body(LONG)).cache_read_input_tokens > 0  # refreshed to 599
    now[0] = 598.0
    assert cache.usage(body(LONG)).cache_read_input_tokens > 0
    now[0] = 898.5
    assert cache.usage(body(LONG)).cache_read_input_tokens == 0  # 5 min after the last read


def test_not_readable_before_the_writing_response_begins() -> None:
    cache = PromptCache()
    first, second = cache.usage(body(LONG)), cache.usage(body(LONG))  # concurrent
    assert first.cache_creation_input_tokens == second.cache_creation_input_tokens > 0
    cache.commit(first)
    cache.commit(second)
    assert cache.usage(body(LONG)).cache_read_input_tokens > 0


# -- the same through the real SDK and the server ------------------------------------------

async def call(client: anthropic.AsyncAnthropic, request: dict[str, Any]) -> Any:
    message = await client.messages.create(**request)
    return message.usage


@pytest.fixture
async def client(api: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key="k", base_url=api.base_url,
                                        max_retries=0) as c:
        yield c


async def test_the_server_reports_usage_like_the_api(
        api: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    first = await call(client, body(LONG))
    again = await call(client, body(LONG, "task 2"))
    short = await call(client, body(SHORT))
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (
        estimate_tokens(LONG), 0)
    assert (again.cache_creation_input_tokens, again.cache_read_input_tokens) == (
        0, estimate_tokens(LONG))
    assert (short.cache_creation_input_tokens, short.cache_read_input_tokens) == (0, 0)
    assert short.input_tokens == estimate_tokens(SHORT) + estimate_tokens("task 1")
    assert api.tokens["cache_read_input_tokens"] == estimate_tokens(LONG)


async def test_concurrent_first_calls_all_write(api: FakeAnthropic,
                                                client: anthropic.AsyncAnthropic) -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    def held(rec: Recorded) -> Reply:
        if len(api.requests) == 3:
            arrived.set()
        return tool_reply("print(1)", gate=gate)

    api.responder = held
    calls = [asyncio.create_task(call(client, body(LONG, f"task {i}"))) for i in range(3)]
    await asyncio.wait_for(arrived.wait(), 10)
    api.responder = None
    gate.set()
    usages = await asyncio.gather(*calls)
    assert [u.cache_read_input_tokens for u in usages] == [0, 0, 0]
    assert (await call(client, body(LONG))).cache_read_input_tokens > 0


async def test_more_than_four_breakpoints_is_refused(client: anthropic.AsyncAnthropic) -> None:
    request = body(LONG)
    request["system"] = [{"type": "text", "text": f"part {i}", "cache_control": CACHED}
                         for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        await call(client, request)


# -- the adapter's request shape -------------------------------------------------------------

def adapter(api: FakeAnthropic, **kw: Any) -> AnthropicGenerator:
    llm = LlmSettings(llm_api_key=SecretStr("k"), anthropic_base_url=api.base_url,
                      light_packages=(), heavy_packages=(), **kw)
    return AnthropicGenerator(llm, ExecutionSettings())


async def test_tools_and_system_are_one_stable_prefix_with_the_breakpoint_after_them(
        api: FakeAnthropic) -> None:
    gen = adapter(api)
    repair = AttemptRecord(attempt=1, code="print(x)", source="llm", status=ResultStatus.FAILED,
                           error=ErrorInfo(code="nonzero_exit", message="exit status 1"))
    try:
        await gen.generate(GenerationTask(prompt="task one"))
        await gen.generate(GenerationTask(prompt="task two", inputs={"a": 1}, history=[repair]))
    finally:
        await gen.close()
    one, two = (r.body for r in api.requests)
    # The only breakpoint is the last system block; nothing per request comes before it.
    assert [t.get("cache_control") for t in one["tools"]] == [None]
    assert [b.get("cache_control") for b in one["system"]] == [None] * (
        len(one["system"]) - 1) + [CACHED]
    assert "cache_control" not in json.dumps(one["messages"])
    assert json.dumps([one["tools"], one["system"]]) == json.dumps([two["tools"], two["system"]])
    assert "task one" not in json.dumps([one["tools"], one["system"]])


@pytest.mark.parametrize("packages", [(), ("numpy", "scipy", "sympy")])
def test_the_static_prefix_reaches_the_default_models_minimum(
        packages: tuple[str, ...]) -> None:
    llm = LlmSettings(light_packages=packages, heavy_packages=packages)
    prefix = body(system_prompt(llm, ExecutionSettings()), model=llm.llm_model,
                  tools=[SUBMIT_CODE_TOOL])
    tokens = sum(b.tokens for b in render(prefix)[:2])
    assert tokens >= min_cacheable_tokens(llm.llm_model)


async def test_distinct_requests_read_the_cached_prefix(api: FakeAnthropic) -> None:
    gen = adapter(api)
    try:
        first = await gen.generate(GenerationTask(prompt="task 0"))
        rest = await asyncio.gather(*(gen.generate(GenerationTask(prompt=f"task {i}"))
                                      for i in range(1, 20)))
    finally:
        await gen.close()
    assert first.usage.cache_write_tokens > 0
    assert all(g.usage.cache_read_tokens == first.usage.cache_write_tokens for g in rest)
    t = api.tokens
    total = t["input_tokens"] + t["cache_read_input_tokens"] + t["cache_creation_input_tokens"]
    assert t["cache_read_input_tokens"] / total >= 0.9
