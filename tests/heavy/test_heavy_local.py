"""The embedded default: LocalJobRunner runs the entrypoint, end to end through run_embedded."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor_worker.heavy.factory import build_job_runner
from executor_worker.heavy.local import LocalJobRunner
from executor_worker.results import sandbox_job
from executor_worker.sandbox import SandboxSettings
from llmexec.config import AppConfig
from llmexec.embedded import run_embedded
from schemas import ExecutionRequest, Limits, ResultStatus, Route
from tests.heavy.conftest import command, heavy_settings


async def test_local_runner_returns_the_outcome_inline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMEXEC_TEST_SECRET", "s3cret")
    runner = LocalJobRunner(SandboxSettings(work_dir=tmp_path))
    await runner.start()
    cmd = command(code="import os\nprint(sorted(os.environ))")
    outcome = await runner.submit(cmd, sandbox_job(cmd, heavy_settings()))
    assert outcome.status == "succeeded"
    # Nothing of the executor's environment reaches the code (the sandbox sets its own).
    assert "LLMEXEC_TEST_SECRET" not in outcome.stdout and "PYTHONPATH" not in outcome.stdout
    assert runner.ready() and runner.describe()["runner"] == "local"
    assert [c async for c in runner.completions()] == []
    await runner.close()
    assert leftovers(tmp_path) == []  # its job directory is gone


def leftovers(path: Path) -> list[Path]:
    return list(path.glob("heavy-*"))


async def test_local_runner_is_the_default(config: AppConfig) -> None:
    assert isinstance(build_job_runner(config.execution, SandboxSettings()), LocalJobRunner)


async def test_heavy_requests_through_run_embedded(config: AppConfig) -> None:
    requests = [
        ExecutionRequest(request_id="ok", code="print(sum(inputs))", inputs=[1, 2, 3],
                         route=Route.HEAVY),
        ExecutionRequest(request_id="slow", code="import time\ntime.sleep(30)",
                         route=Route.HEAVY, limits=Limits(timeout_s=0.5)),
        ExecutionRequest(request_id="crash", code="raise ValueError('no')", route=Route.HEAVY),
    ]
    got = await run_embedded(config, requests)
    assert got["ok"].status is ResultStatus.SUCCEEDED and got["ok"].stdout == "6\n"
    assert got["ok"].route == "heavy" and "rlimits" in got["ok"].sandbox
    assert got["slow"].status is ResultStatus.TIMED_OUT
    assert got["crash"].status is ResultStatus.FAILED and "ValueError" in got["crash"].stderr
