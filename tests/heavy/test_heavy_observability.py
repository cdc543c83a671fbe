"""Heavy Jobs in traces and metrics: the submit span, the reconciler's report span in the
same trace, and the heavy-jobs gauge following the Job through the watch (fake API, real
kubernetes client)."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from executor_worker.handler import ExecutorWorker
from executor_worker.heavy.contract import encode_record
from executor_worker.heavy.reconciler import Reconciler
from executor_worker.heavy.render import job_name
from executor_worker.observe import HEAVY_JOBS, ExecutorMetrics
from executor_worker.sandbox import SandboxOutcome
from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.spans import Trace, spans
from tests.heavy.conftest import HUBS, ListPublisher, RunnerFactory, command, heavy_settings

__all__ = ["spans"]
OK = SandboxOutcome(status="succeeded", exit_code=0, stdout="42\n", stderr="",
                    duration_ms=12.0, layers=("process",))


async def test_submit_and_report_are_one_trace_and_the_gauge_follows_the_job(
        kube: FakeKubeApi, runners: RunnerFactory, spans: InMemorySpanExporter) -> None:
    registry = CollectorRegistry()
    ExecutorMetrics(registry)
    runner = runners()
    publisher = ListPublisher()
    reconciling = asyncio.create_task(Reconciler(runner, publisher, HUBS).run())
    worker = ExecutorWorker(hubs=HUBS, light=None, heavy=runner,  # type: ignore[arg-type]
                            settings=heavy_settings())

    def jobs(state: str) -> float:
        return registry.get_sample_value("llmexec_heavy_jobs", {"state": state}) or 0.0

    with trace.get_tracer("test").start_as_current_span("executions process") as root:
        assert await worker.handle(command(), None) == []  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while jobs("pending") + jobs("running") < 1:  # noqa: ASYNC110 (the watch thread)
            await asyncio.sleep(0.02)
    kube.finish_job(job_name("req-1", 1), log=encode_record(OK) + "\n")
    async with asyncio.timeout(5):
        while not publisher.published or jobs("pending") + jobs("running") > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await runner.close()
    await asyncio.wait_for(reconciling, 5)

    t = Trace(list(spans.get_finished_spans()))
    assert t.trace_ids() == {root.get_span_context().trace_id}
    assert t.attr("heavy.submit", "llmexec.detached") == [True]
    (report,) = t.named("heavy.report")
    assert report.attributes and report.attributes["llmexec.status"] == "succeeded"
    assert registry.get_sample_value("llmexec_heavy_job_oldest_pending_seconds") == 0.0
    assert HEAVY_JOBS.counts() == {"pending": 0, "running": 0}
