"""End to end on the embedded backends: both workers, the real processor, the memory bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from consumers.results import ResultFollower
from llmexec.config import AppConfig
from llmexec.embedded import run_embedded, running_pipeline
from pipeline.bus.memory import MemoryBus
from pipeline.bus.ports import OutgoingEvent
from schemas import DeadLetter, ExecutionRequest, Limits, ResultStatus, Route, decode_event


async def test_code_request_runs_through_both_workers(config: AppConfig) -> None:
    req = ExecutionRequest(code="import json\nprint(sum(inputs['xs']))", inputs={"xs": [1, 2, 3]})
    (result,) = (await run_embedded(config, [req])).values()
    assert result.status is ResultStatus.SUCCEEDED
    assert result.stdout == "6\n"
    assert result.exit_code == 0
    assert result.route == "light"
    assert [a.attempt for a in result.attempts] == [1]
    assert result.attempts[0].source == "user" and result.attempts[0].validation.ok  # type: ignore[union-attr]
    assert "rlimits" in result.sandbox


async def test_prompt_without_llm_key_gets_a_clear_failed_result(config: AppConfig) -> None:
    (result,) = (await run_embedded(config, [ExecutionRequest(prompt="sum 1..10")])).values()
    assert result.status is ResultStatus.FAILED
    assert result.error is not None and result.error.code == "llm_not_configured"
    assert "LLM_API_KEY" in result.error.message


async def test_each_failure_mode_has_its_status_and_reason(config: AppConfig) -> None:
    reqs = {
        "syntax": ExecutionRequest(request_id="syntax", code="def f(:\n  pass"),
        "raises": ExecutionRequest(request_id="raises", code="raise ValueError('boom')"),
        "slow": ExecutionRequest(request_id="slow", code="while True: pass",
                                 limits=Limits(timeout_s=0.5)),
        "heavy": ExecutionRequest(request_id="heavy", code="print('big')", route=Route.HEAVY),
    }
    got = await run_embedded(config, list(reqs.values()))
    assert got["syntax"].status is ResultStatus.REJECTED
    assert got["syntax"].error.code == "validation_failed"  # type: ignore[union-attr]
    assert "line 1" in got["syntax"].error.message  # type: ignore[union-attr]
    assert got["raises"].status is ResultStatus.FAILED
    assert "ValueError: boom" in got["raises"].error.message  # type: ignore[union-attr]
    assert "ValueError: boom" in got["raises"].stderr
    assert got["slow"].status is ResultStatus.TIMED_OUT
    assert got["slow"].error.code == "timeout"  # type: ignore[union-attr]
    assert got["heavy"].status is ResultStatus.SUCCEEDED and got["heavy"].route == "heavy"


@pytest.mark.parametrize("hub", ["requests", "executions"])
async def test_malformed_event_on_a_worker_hub_is_dead_lettered_and_pipeline_goes_on(
    config: AppConfig, hub: str
) -> None:
    bus = MemoryBus(partitions=2, balance_interval_s=0.05)
    hubs = config.bus.hubs
    stack = contextlib.AsyncExitStack()
    pipeline = await stack.enter_async_context(running_pipeline(config, bus=bus))
    follower = ResultFollower(pipeline.bus, hubs)
    dlq_seen: list[DeadLetter] = []

    class DlqReader:
        async def on_open(self, ctx: object) -> None: ...
        async def on_close(self, ctx: object, reason: str) -> None: ...
        async def on_events(self, ctx: object, events: list[object]) -> None:
            dlq_seen.extend(decode_event(e.body) for e in events)  # type: ignore[attr-defined, misc]

    dlq_sub = bus.subscribe(hubs.deadletter, "inspect")
    dlq_task = asyncio.create_task(dlq_sub.run(DlqReader()))
    try:
        target = getattr(hubs, hub)
        await bus.publisher().publish(target, [OutgoingEvent(b"{broken", partition_key="x")])
        good = ExecutionRequest(code="print('still alive')")
        await bus.publisher().publish(hubs.requests, [OutgoingEvent(good.to_json_bytes(),
                                                                    partition_key=good.request_id)])
        got = await follower.wait_for([good.request_id], timeout_s=20)
        assert got[good.request_id].stdout == "still alive\n"
        for _ in range(100):
            if dlq_seen:
                break
            await asyncio.sleep(0.05)
        (record,) = dlq_seen
        assert record.source_hub == target
        assert record.reason.startswith("malformed event: body is not JSON")
        assert record.body == b"{broken"
    finally:
        await follower.close()
        await dlq_sub.stop()
        await dlq_task
        await stack.aclose()


def _llmexec(*args: str, env: dict[str, str] | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmexec", *args], capture_output=True,
                          text=True, timeout=120, env=env, input=stdin)


def test_cli_run_json_prints_exactly_one_result_object() -> None:
    proc = _llmexec("run", "--code", "print(sum(range(10)))", "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    result = json.loads(line)
    assert result["status"] == "succeeded" and result["stdout"] == "45\n"


def test_cli_exit_status_is_1_for_a_failed_result_and_2_for_usage() -> None:
    assert _llmexec("run", "--code", "import sys; sys.exit(3)", "--json").returncode == 1
    usage = _llmexec("run")
    assert usage.returncode == 2 and "nothing to run" in usage.stderr


def test_cli_requests_file_answers_each_request_exactly_once(tmp_path: Path) -> None:
    lines = [json.dumps({"request_id": f"r{i}", "code": f"print({i} * {i})"}) for i in range(6)]
    lines.insert(3, "{this is not json")
    lines.append(json.dumps({"request_id": "noprompt"}))
    path = tmp_path / "reqs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    proc = _llmexec("run", "--requests", str(path), "--json")
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    by_id = {r["request_id"]: r for r in results}
    assert len(results) == len(by_id) == 8
    assert [by_id[f"r{i}"]["stdout"] for i in range(6)] == [f"{i * i}\n" for i in range(6)]
    assert by_id["line-4"]["status"] == "rejected"
    assert by_id["noprompt"]["status"] == "rejected"
    assert proc.returncode == 1  # not every request succeeded


def test_bad_configuration_stops_start_up_with_one_line_naming_the_variable() -> None:
    import os

    env = {**os.environ, "MAX_RETRIES": "-1"}
    proc = _llmexec("run", "--code", "print(1)", env=env)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "MAX_RETRIES" in line and "-1" in line
    bad_port = _llmexec("worker", "llm", env={**os.environ, "EXECUTION_TIMEOUT": "soon"})
    assert bad_port.returncode == 2 and "EXECUTION_TIMEOUT" in bad_port.stderr
