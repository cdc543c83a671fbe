"""End to end: prompt requests through the embedded pipeline (``run_embedded``: memory bus,
both workers on the real processor, the real sandbox) with the real Anthropic SDK talking
to the fake Messages API. Run-time failures travel back over the requests hub."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from llmexec.embedded import run_embedded
from schemas import ExecutionRequest, ResultStatus
from tests.fakes.anthropic_server import FakeAnthropic, error_reply, text_reply, tool_reply
from tests.fakes.llm_harness import llm_config


def ask(request_id: str, text: str) -> ExecutionRequest:
    return ExecutionRequest(request_id=request_id, prompt=text)


async def test_prompts_succeed_including_after_a_skipped_tool_and_a_validation_repair(
        api: FakeAnthropic) -> None:
    api.on("squares", tool_reply("print(sum(i * i for i in range(1, 101)))"))
    api.on("chatty", text_reply("I would print 42."), tool_reply("print(42)"))
    api.on("network", tool_reply("import urllib.request\nprint(urllib.request.urlopen('x'))"),
           tool_reply("print('offline')"))
    got = await run_embedded(llm_config(api.base_url), [
        ask("squares", "sum the squares of 1..100"), ask("chatty", "a chatty model"),
        ask("network", "fetch from the network")])

    assert got["squares"].status is ResultStatus.SUCCEEDED and got["squares"].stdout == "338350\n"
    assert got["squares"].attempts[0].usage is not None
    assert got["chatty"].status is ResultStatus.SUCCEEDED and got["chatty"].stdout == "42\n"
    fixed = got["network"]
    assert fixed.status is ResultStatus.SUCCEEDED and fixed.stdout == "offline\n"
    assert [(a.attempt, a.status) for a in fixed.attempts] == [
        (1, ResultStatus.REJECTED), (2, ResultStatus.SUCCEEDED)]
    assert fixed.attempts[0].validation is not None
    assert fixed.attempts[0].validation.issues[0].rule == "network"


async def test_a_run_time_failure_goes_back_to_the_model_and_is_fixed(
        api: FakeAnthropic) -> None:
    api.script(tool_reply("total = sum(range(1, 11))\nprint(totl)"),
               tool_reply("total = sum(range(1, 11))\nprint(total)"))
    (result,) = (await run_embedded(llm_config(api.base_url), [ask("r1", "sum 1..10")])).values()

    assert result.status is ResultStatus.SUCCEEDED and result.stdout == "55\n"
    assert [(a.attempt, a.status) for a in result.attempts] == [
        (1, ResultStatus.FAILED), (2, ResultStatus.SUCCEEDED)]
    first = result.attempts[0]
    assert first.code is not None and "totl" in first.code
    assert first.error is not None and "NameError" in first.error.details["stderr"]
    assert all(a.usage is not None for a in result.attempts)
    repair = api.requests[1].task_text
    assert "print(totl)" in repair and "NameError: name 'totl' is not defined" in repair


async def test_repairs_stop_at_max_retries_with_every_attempt_in_the_result(
        api: FakeAnthropic) -> None:
    api.script(tool_reply("raise RuntimeError('still broken')"))
    cfg = llm_config(api.base_url, llm={"max_retries": 3})
    (result,) = (await run_embedded(cfg, [ask("r1", "never works")])).values()

    assert result.status is ResultStatus.FAILED and result.attempt == 3
    assert [a.attempt for a in result.attempts] == [1, 2, 3]
    assert all(a.status is ResultStatus.FAILED and a.code for a in result.attempts)
    assert "still broken" in result.stderr
    assert len(api.requests) == 3


async def test_throttling_is_retried_after_retry_after(api: FakeAnthropic) -> None:
    api.script(error_reply(429, "rate limited", retry_after="1"), tool_reply("print('ok')"))
    (result,) = (await run_embedded(llm_config(api.base_url), [ask("r1", "x")])).values()

    assert result.status is ResultStatus.SUCCEEDED and result.stdout == "ok\n"
    first, second = api.requests
    assert second.at - first.at >= 1.0  # retry-after honoured (the test backoff is 10 ms)


async def test_a_failing_api_ends_in_a_failed_result_not_only_a_dead_letter(
        api: FakeAnthropic) -> None:
    api.on("five hundred", error_reply(500, "internal error"))
    api.on("bad key", error_reply(401, "invalid x-api-key"))
    cfg = llm_config(api.base_url, processor={"transient_retries": 2})
    got = await run_embedded(cfg, [ask("down", "five hundred"), ask("key", "bad key")])

    down = got["down"]
    assert down.status is ResultStatus.FAILED and down.error is not None
    assert down.error.code == "llm_unavailable"
    assert "after 3 tries" in down.error.message and "500" in down.error.message
    assert sum("five hundred" in r.task_text for r in api.requests) == 3  # bounded

    key = got["key"]
    assert key.status is ResultStatus.FAILED and key.error is not None
    assert key.error.code == "llm_error" and "LLM_API_KEY" in key.error.message
    assert sum("bad key" in r.task_text for r in api.requests) == 1  # no retry


async def test_a_slow_api_call_does_not_hold_up_other_requests(api: FakeAnthropic) -> None:
    api.on("slow", tool_reply("print('slow')", delay_s=2.0))
    api.script(tool_reply("print('fast')"))
    cfg = llm_config(api.base_url, partitions=4)
    requests = [ask("slow", "slow one"), *(ask(f"fast-{i}", f"fast {i}") for i in range(8))]
    started = time.monotonic()
    got = await run_embedded(cfg, requests)

    assert all(r.status is ResultStatus.SUCCEEDED for r in got.values())
    slow_done = got["slow"].completed_at
    for i in range(8):
        # Every other request, on any partition (including the slow one's), finished
        # while the slow call was still in flight.
        assert (slow_done - got[f"fast-{i}"].completed_at).total_seconds() > 1.0
    assert time.monotonic() - started < 6.0


async def test_without_a_key_prompt_requests_fail_clearly() -> None:
    (result,) = (await run_embedded(llm_config(None, api_key=None), [ask("r1", "x")])).values()
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "llm_not_configured" and "LLM_API_KEY" in result.error.message


async def test_llmexec_run_uses_the_configured_api(api: FakeAnthropic) -> None:
    """The console entry point reads LLM_API_KEY, ANTHROPIC_BASE_URL and LLM_MODEL."""
    api.script(tool_reply("print(sum(i * i for i in range(1, 101)))"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("LLM_API_KEY", "ANTHROPIC_API_KEY", "EVENT_HUB_CONNECTION_STRING")}
    env.update(LLM_API_KEY="sk-cli", ANTHROPIC_BASE_URL=api.base_url, LLM_MODEL="claude-cli",
               MAX_RETRIES="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmexec", "run", "sum the squares of 1..100",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)

    assert proc.returncode == 0, err.decode()
    assert out.decode() == "338350\n"
    (sent,) = api.requests
    assert sent.body["model"] == "claude-cli"
    assert sent.headers["authorization"] == "Bearer sk-cli"
