"""What the model is told comes from settings; routing follows the limits and packages."""

from __future__ import annotations

import pytest

from llm_worker.generator import Submission
from llm_worker.prompt import SUBMIT_CODE_TOOL, render_task, system_prompt
from llm_worker.routing import resolve_route
from llm_worker.settings import LlmSettings
from pipeline.settings import ExecutionSettings
from schemas import AttemptRecord, ErrorInfo, ExecRoute, Limits, ResultStatus, Route

EXECUTION = ExecutionSettings(execution_timeout=12, execution_memory_mb=300,
                              heavy_job_timeout=1800, heavy_job_memory_mb=6000,
                              max_output_bytes=65536)


def test_system_prompt_states_the_environment_from_settings() -> None:
    llm = LlmSettings(light_packages=("numpy", "mpmath"), heavy_packages=("numpy", "polars"),
                      sandbox_python_version="3.12")
    text = system_prompt(llm, EXECUTION)
    for fact in ("Python 3.12", "light route: numpy, mpmath", "heavy route: numpy, polars",
                 "light: 12 s wall time, 300 MiB", "heavy: 1800 s wall time, 6000 MiB",
                 "65536 bytes", "`inputs`", "inputs.json", "artifacts", "no network",
                 "subprocess", "submit_code"):
        assert fact in text, fact
    assert system_prompt(llm, EXECUTION) == text  # static: the API's prompt cache can hit


def test_tool_schema_and_submission_model_agree() -> None:
    schema = SUBMIT_CODE_TOOL["input_schema"]
    assert set(schema["properties"]) == set(Submission.model_fields)
    assert set(schema["required"]) == set(Submission.model_fields)
    assert schema["properties"]["route"]["enum"] == ["light", "heavy"]


def test_task_message_carries_inputs_and_every_failed_attempt() -> None:
    history = [
        AttemptRecord(attempt=1, code="print(x)", source="llm", status=ResultStatus.FAILED,
                      error=ErrorInfo(code="nonzero_exit", message="exit status 1",
                                      details={"stderr": "NameError: name 'x' is not defined"})),
    ]
    text = render_task("add things", {"a": [1, 2]}, history, Route.AUTO)
    assert '{"a": [1, 2]}' in text
    assert "print(x)" in text and "NameError" in text and 'number="1"' in text
    assert "Fix it" in text


def test_task_message_clips_huge_inputs() -> None:
    text = render_task("sum", list(range(100_000)), [], Route.LIGHT)
    assert len(text) < 10_000 and "truncated" in text and "light route" in text


def estimate(runtime: float = 1, memory: float = 50, route: str = "light") -> Submission:
    return Submission(code="x", route=route, route_reason="why",  # type: ignore[arg-type]
                      expected_runtime_s=runtime, expected_memory_mb=memory, packages=[])


@pytest.mark.parametrize(("kwargs", "route", "reason"), [
    ({}, ExecRoute.LIGHT, "fits"),
    ({"requested": Route.HEAVY}, ExecRoute.HEAVY, "requested heavy"),
    ({"requested": Route.LIGHT, "estimate": estimate(runtime=999)}, ExecRoute.LIGHT,
     "requested light"),
    ({"limits": Limits(timeout_s=60)}, ExecRoute.HEAVY, "requested timeout"),
    ({"limits": Limits(memory_mb=4096)}, ExecRoute.HEAVY, "requested memory"),
    ({"heavy_only_packages": frozenset({"pandas"})}, ExecRoute.HEAVY, "pandas"),
    ({"estimate": estimate(runtime=40)}, ExecRoute.HEAVY, "model estimates 40s"),
    ({"estimate": estimate(memory=2000)}, ExecRoute.HEAVY, "model estimates 2000 MiB"),
    ({"estimate": estimate(route="heavy")}, ExecRoute.LIGHT, "model suggested heavy"),
])
def test_routing(kwargs: dict[str, object], route: ExecRoute, reason: str) -> None:
    args: dict[str, object] = {"requested": Route.AUTO, "limits": Limits(),
                               "execution": EXECUTION, **kwargs}
    got, why = resolve_route(**args)  # type: ignore[arg-type]
    assert got is route and reason in why


def test_settings_read_either_key_and_comma_separated_packages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-anthropic")
    monkeypatch.setenv("HEAVY_PACKAGES", "numpy, pandas ,sklearn")
    monkeypatch.setenv("LLM_MAX_CONCURRENCY", "8")
    s = LlmSettings()
    assert s.llm_api_key is not None and s.llm_api_key.get_secret_value() == "sk-anthropic"
    assert s.heavy_packages == ("numpy", "pandas", "sklearn")
    assert s.llm_max_concurrency == 8
    monkeypatch.setenv("LLM_API_KEY", "sk-llm")
    key = LlmSettings().llm_api_key
    assert key is not None and key.get_secret_value() == "sk-llm"
