"""The LLM worker's handler with the real adapter and the fake API, one call at a time as the
processor makes them: the validation repair loop, the bounds, errors turned into results,
resuming after a transient error, duplicates, user code, metrics, concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from llm_worker.handler import REWRITE_TASK
from pipeline.errors import TransientError
from schemas import (
    ErrorInfo,
    ExecRoute,
    ExecutionCommand,
    ExecutionRequest,
    ExecutionResult,
    RepairRequest,
    ResultStatus,
)
from tests.fakes.anthropic_server import FakeAnthropic, error_reply, text_reply, tool_reply
from tests.fakes.llm_harness import WorkerHarness, llm_config

MakeHarness = Callable[..., WorkerHarness]


@pytest.fixture
async def harness(api: FakeAnthropic) -> AsyncIterator[MakeHarness]:
    made: list[WorkerHarness] = []

    def make(**kw: object) -> WorkerHarness:
        h = WorkerHarness(llm_config(api.base_url, **kw))  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


def prompt(text: str = "sum the squares of 1..100", **kw: object) -> ExecutionRequest:
    return ExecutionRequest(request_id=kw.pop("request_id", "r1"), prompt=text, **kw)  # type: ignore[arg-type]


async def test_prompt_becomes_a_validated_routed_command(api: FakeAnthropic,
                                                         harness: MakeHarness) -> None:
    h = harness()
    api.script(tool_reply("import numpy as np\nprint(int((np.arange(1, 101) ** 2).sum()))",
                          packages=["numpy"]))
    (out,) = await h.handle(prompt())
    cmd = out.event
    assert out.hub == "executions" and isinstance(cmd, ExecutionCommand)
    assert (cmd.attempt, cmd.source, cmd.route) == (1, "llm", ExecRoute.LIGHT)
    assert cmd.validation.ok and cmd.history == [] and cmd.prompt == "sum the squares of 1..100"
    assert cmd.usage is not None and cmd.usage.output_tokens == 120
    assert h.sample("llmexec_llm_generations_total", model="claude-sonnet-5-5",
                    outcome="ok") == 1
    assert h.sample("llmexec_llm_tokens_total", model="claude-sonnet-5-5",
                    kind="input") == api.tokens["input_tokens"] > 0
    assert h.sample("llmexec_llm_tokens_total", model="claude-sonnet-5-5",
                    kind="cache_write") > 0
    assert h.sample("llmexec_llm_request_seconds_count", model="claude-sonnet-5-5") == 1


async def test_code_failing_validation_goes_back_to_the_model_with_its_report(
        api: FakeAnthropic, harness: MakeHarness) -> None:
    h = harness()
    api.script(tool_reply("import requests\nprint(requests.get('http://x').text)"),
               tool_reply("print(338350)"))
    (out,) = await h.handle(prompt())
    cmd = out.event
    assert isinstance(cmd, ExecutionCommand) and cmd.attempt == 2 and cmd.code == "print(338350)"
    (first,) = cmd.history
    assert first.attempt == 1 and first.status is ResultStatus.REJECTED
    assert first.validation is not None and first.validation.issues[0].rule == "network"
    assert first.usage is not None  # tokens of the rejected attempt are on record
    fix_request = api.requests[1].task_text
    assert "import requests" in fix_request and "network (line 1)" in fix_request
    assert h.sample("llmexec_llm_validation_failures_total", rule="network", source="llm") == 1
    assert h.sample("llmexec_llm_repairs_total", reason="validation") == 1


async def test_validation_repairs_stop_at_max_retries(api: FakeAnthropic,
                                                      harness: MakeHarness) -> None:
    h = harness(llm={"max_retries": 3})
    api.script(tool_reply("import subprocess"))
    (out,) = await h.handle(prompt())
    result = out.event
    assert out.hub == "results" and isinstance(result, ExecutionResult)
    assert result.status is ResultStatus.FAILED and result.attempt == 3
    assert result.error is not None and result.error.code == "validation_failed"
    assert "after 3 attempts (MAX_RETRIES=3)" in result.error.message
    assert [a.attempt for a in result.attempts] == [1, 2, 3]
    assert all(a.status is ResultStatus.REJECTED for a in result.attempts)
    assert len(api.requests) == 3
    assert h.sample("llmexec_llm_gave_up_total", reason="attempts_exhausted") == 1


async def test_a_refused_key_is_an_immediate_failed_result(api: FakeAnthropic,
                                                          harness: MakeHarness) -> None:
    h = harness()
    api.script(error_reply(401, "invalid x-api-key"))
    (out,) = await h.handle(prompt())
    result = out.event
    assert isinstance(result, ExecutionResult) and result.status is ResultStatus.FAILED
    assert result.error is not None and result.error.code == "llm_error"
    assert "401" in result.error.message and "LLM_API_KEY" in result.error.message
    assert result.error.details == {"error_class": "authentication", "status": 401}
    assert len(api.requests) == 1
    assert h.sample("llmexec_llm_api_errors_total", error_class="authentication") == 1


async def test_transient_errors_are_raised_until_the_last_try_then_become_a_result(
        api: FakeAnthropic, harness: MakeHarness) -> None:
    h = harness(processor={"transient_retries": 2})
    api.script(error_reply(529, "overloaded"))
    for try_number in (1, 2):
        with pytest.raises(TransientError):
            await h.handle(prompt(), try_number=try_number)
    (out,) = await h.handle(prompt(), try_number=3)
    result = out.event
    assert isinstance(result, ExecutionResult) and result.status is ResultStatus.FAILED
    assert result.error is not None and result.error.code == "llm_unavailable"
    assert "no usable LLM answer after 3 tries: " in result.error.message
    assert "529" in result.error.message
    assert h.sample("llmexec_llm_api_errors_total", error_class="overloaded") == 3


async def test_a_retried_call_resumes_instead_of_paying_for_attempts_again(
        api: FakeAnthropic, harness: MakeHarness) -> None:
    h = harness()
    api.script(tool_reply("x = input()"), error_reply(429, retry_after="0"),
               tool_reply("print(1)"))
    with pytest.raises(TransientError):
        await h.handle(prompt())
    (out,) = await h.handle(prompt(), try_number=2)
    assert isinstance(out.event, ExecutionCommand) and out.event.attempt == 2
    assert [r.attempt for r in out.event.history] == [1]
    assert len(api.requests) == 3
    # A duplicate of the same event gets the same command, without another model call.
    (again,) = await h.handle(prompt())
    assert again.event == out.event and len(api.requests) == 3


async def test_a_response_that_skips_the_tool_is_asked_again(api: FakeAnthropic,
                                                            harness: MakeHarness) -> None:
    h = harness()
    api.script(text_reply("print(1)"), tool_reply("print(1)"))
    with pytest.raises(TransientError, match="did not call submit_code"):
        await h.handle(prompt())
    (out,) = await h.handle(prompt(), try_number=2)
    assert isinstance(out.event, ExecutionCommand) and out.event.attempt == 1
    assert h.sample("llmexec_llm_generations_total", model="claude-sonnet-5-5",
                    outcome="malformed") == 1
    assert h.sample("llmexec_llm_api_errors_total", error_class="malformed") == 1


async def test_a_model_that_keeps_ignoring_the_tool_gets_a_clear_result(
        api: FakeAnthropic, harness: MakeHarness) -> None:
    h = harness(processor={"transient_retries": 1})
    api.script(text_reply("I cannot use tools."))
    with pytest.raises(TransientError):
        await h.handle(prompt())
    (out,) = await h.handle(prompt(), try_number=2)
    assert isinstance(out.event, ExecutionResult) and out.event.error is not None
    assert out.event.error.code == "llm_bad_response"
    assert "did not call submit_code" in out.event.error.message


async def test_user_code_is_validated_but_never_rewritten_unless_allowed(
        api: FakeAnthropic, harness: MakeHarness) -> None:
    h = harness(llm={"heavy_packages": ("numpy", "pandas")})
    api.script(tool_reply("print('fixed')"))
    (kept,) = await h.handle(ExecutionRequest(request_id="u1", code="import requests"))
    assert isinstance(kept.event, ExecutionResult)
    assert kept.event.status is ResultStatus.REJECTED and len(api.requests) == 0
    assert h.sample("llmexec_llm_validation_failures_total", rule="network", source="user") == 1

    (heavy,) = await h.handle(ExecutionRequest(request_id="u2", code="import pandas"))
    assert isinstance(heavy.event, ExecutionCommand) and heavy.event.route is ExecRoute.HEAVY
    assert heavy.event.source == "user" and "pandas" in heavy.event.route_reason

    (fixed,) = await h.handle(ExecutionRequest(request_id="u3", code="import requests",
                                               allow_rewrite=True))
    cmd = fixed.event
    assert isinstance(cmd, ExecutionCommand) and cmd.attempt == 2 and cmd.source == "llm"
    assert cmd.prompt == REWRITE_TASK and cmd.history[0].source == "user"
    assert "import requests" in api.requests[0].task_text


async def test_a_repair_past_the_last_attempt_is_the_final_result(
        api: FakeAnthropic, harness: MakeHarness) -> None:
    h = harness(llm={"max_retries": 2})
    cmd = ExecutionCommand(request_id="r1", attempt=2, code="print(x)", source="llm",
                           prompt="p")
    failure = ExecutionResult(request_id="r1", attempt=2, status=ResultStatus.FAILED,
                              stderr="NameError: name 'x' is not defined", exit_code=1,
                              error=ErrorInfo(code="nonzero_exit", message="exit status 1"))
    (out,) = await h.handle(RepairRequest(request_id="r1", command=cmd, failure=failure))
    result = out.event
    assert out.hub == "results" and isinstance(result, ExecutionResult)
    assert result.error is not None and "gave up after 2 attempts" in result.error.message
    assert result.attempts[-1].error is not None
    assert "NameError" in result.attempts[-1].error.details["stderr"]
    assert len(api.requests) == 0


async def test_llm_calls_overlap_up_to_the_concurrency_bound(api: FakeAnthropic,
                                                            harness: MakeHarness) -> None:
    api.script(tool_reply("print(1)", delay_s=0.3))
    wide = harness()
    started = time.monotonic()
    await asyncio.gather(*(wide.handle(prompt(request_id=f"w{i}")) for i in range(20)))
    assert time.monotonic() - started < 1.5  # 20 x 0.3 s one after another would be 6 s
    assert api.max_in_flight == 20

    api.max_in_flight = 0
    narrow = harness(llm={"llm_max_concurrency": 4})
    await asyncio.gather(*(narrow.handle(prompt(request_id=f"n{i}")) for i in range(8)))
    assert api.max_in_flight == 4
