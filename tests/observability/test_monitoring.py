"""The dashboard and the alert rules use only metrics the services export: both services
started in-process (the real processors, probe servers and assembly), one request through
them, then their real /metrics scraped over HTTP and parsed."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from consumers.results import ResultFollower
from llmexec import assembly
from llmexec.embedded import embedded
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import OutgoingEvent
from pipeline.service import serve
from producers.client import RequestProducer
from schemas import ExecutionRequest, ResultStatus
from tests.fakes.anthropic_server import FakeAnthropic, tool_reply
from tests.fakes.llm_harness import llm_config

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expressions() -> list[str]:
    board = json.loads((MONITORING / "dashboards" / "llm-executor.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    exprs += [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Every name used as a series selector: before ``{`` or ``[``, or any llmexec_ name."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
    selectors = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr))
    return selectors | set(re.findall(r"\bllmexec_[a-z0-9_]+\b", expr))


def exported(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        names.update(s.name for s in family.samples)
    return names


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def test_every_metric_the_dashboard_and_alerts_use_is_exported(api: FakeAnthropic) -> None:
    api.on("seven", tool_reply("print(7)"))
    cfg = embedded(llm_config(api.base_url))
    stop = asyncio.Event()
    ports = {"llm": free_port(), "executor": free_port()}
    async with AsyncExitStack() as stack:
        bus = build_bus(cfg.bus)
        stack.push_async_callback(bus.close)
        generator = await stack.enter_async_context(assembly.open_generator(cfg))
        backends = await stack.enter_async_context(assembly.open_executor_backends(cfg))
        m_llm, m_exec = assembly.Metrics.create(), assembly.Metrics.create()
        llm = assembly.llm_processor(bus, cfg, m_llm, generator=generator)
        executor = assembly.executor_processor(bus, cfg, m_exec, backends=backends)
        services = [
            asyncio.create_task(serve(
                name="llm", processors=[llm], metrics=m_llm.pipeline, port=ports["llm"],
                health=lambda: {}, ready=lambda: (True, {}), grace_s=2, stop=stop)),
            asyncio.create_task(serve(
                name="executor", processors=[executor], metrics=m_exec.pipeline,
                port=ports["executor"], health=lambda: {}, ready=lambda: (True, {}),
                grace_s=2, stop=stop)),
        ]
        follower = ResultFollower(bus, cfg.bus.hubs)
        try:
            await RequestProducer(bus.publisher(), cfg.bus.hubs.requests).submit(
                ExecutionRequest(request_id="seven", prompt="print seven"))
            await bus.publisher().publish(cfg.bus.hubs.requests,
                                          [OutgoingEvent(b"junk", partition_key="junk")])
            got = await follower.wait_for(["seven"], timeout_s=30)
            assert got["seven"].status is ResultStatus.SUCCEEDED
            texts = {kind: await asyncio.to_thread(scrape, port) for kind, port in ports.items()}
        finally:
            await follower.close()
            stop.set()
            await asyncio.gather(*services)

    have = exported(texts["llm"]) | exported(texts["executor"])
    used = set().union(*(metric_names(e) for e in expressions()))
    assert used, "no metric names found in the dashboard and rules"
    assert sorted(used - have) == []
    # The request really flowed: these have samples, not only declarations.
    samples = texts["llm"] + texts["executor"]
    for line in ('llmexec_results_total{status="succeeded",worker="executor"} 1.0',
                 'llmexec_deadletters_total{cause="malformed",hub="requests",worker="llm"} 1.0',
                 'llmexec_sandbox_runs_total{route="light",status="succeeded"} 1.0',
                 'llmexec_llm_generations_total{model='):
        assert line in samples, line
    assert re.search(r'^llmexec_sandbox_layer\{layer="rlimits"\} 1\.0$', texts["executor"], re.M)


def test_the_name_check_can_fail() -> None:
    assert metric_names('sum by (le) (rate(llmexec_nope_bucket{a="llmexec_x"}[5m])) / up') \
        == {"llmexec_nope_bucket"}
    assert "llmexec_nope_bucket" not in exported("# TYPE llmexec_yes counter\nllmexec_yes_total 1\n")


def test_dashboard_file_is_what_the_builder_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build", MONITORING / "build_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    on_disk = json.loads((MONITORING / "dashboards" / "llm-executor.json").read_text())
    assert module.dashboard() == on_disk


def test_every_alert_has_a_runbook() -> None:
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    alerts = [r for g in rules["spec"]["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} == {
        "LlmExecutorBacklogGrowing", "LlmExecutorDeadLetterRate", "LlmExecutorPartitionStuck",
        "LlmExecutorLlmErrorRate", "LlmExecutorSandboxDegraded", "LlmExecutorHeavyJobsPending"}
    assert all(a["annotations"]["runbook"].strip() for a in alerts)
