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
from executor_worker.heavy.kube import KubernetesJobRunner
from executor_worker.heavy.reconciler import Reconciler
from executor_worker.heavy.render import job_name
from executor_worker.observe import HEAVY_JOBS, ExecutorMetrics
from executor_worker.results import sandbox_job
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


async def _pending(runner: KubernetesJobRunner,
                   request_id: str) -> tuple[asyncio.Task[None], str]:
    """A reconciler watching, and one Job of ``request_id`` submitted and counted pending."""
    reconciling = asyncio.create_task(Reconciler(runner, ListPublisher(), HUBS).run())
    cmd = command(request_id)
    assert await runner.submit(cmd, sandbox_job(cmd, heavy_settings())) is None
    name = job_name(request_id, 1)
    async with asyncio.timeout(5):
        while name not in HEAVY_JOBS.names():  # noqa: ASYNC110 (the watch thread)
            await asyncio.sleep(0.02)
    return reconciling, name


async def test_a_closed_runner_leaves_nothing_in_the_gauge(runners: RunnerFactory) -> None:
    """The gauge mirrors a watch; once the watch stops, its Jobs are nobody's view (a
    closed runner left its pending Job counted for the rest of the process: seen in CI as
    another test's gauge that never went back to 0)."""
    runner = runners()
    reconciling, name = await _pending(runner, "left-pending")
    assert HEAVY_JOBS.counts()["pending"] == 1
    await runner.close()
    await asyncio.wait_for(reconciling, 5)
    assert name not in HEAVY_JOBS.names()
    assert HEAVY_JOBS.counts() == {"pending": 0, "running": 0}


async def test_a_job_gone_while_the_watch_was_down_leaves_the_gauge_at_the_next_list(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    runner = runners()
    reconciling, name = await _pending(runner, "gone-unseen")
    kube.list_failures = 10**6  # the watch ends (resync 1 s) and cannot list again
    async with asyncio.timeout(5):
        while not kube.refused:  # noqa: ASYNC110 (the watch thread)
            await asyncio.sleep(0.02)
    # Removed for good while nobody watched: its DELETED is never delivered (the next
    # watch starts from the next list's resourceVersion).
    kube.delete("jobs", "default", name)
    kube.patch("jobs", "default", name, {"metadata": {"finalizers": None}})
    assert kube.get("jobs", "default", name) is None
    assert name in HEAVY_JOBS.names()
    kube.list_failures = 0
    async with asyncio.timeout(5):
        while name in HEAVY_JOBS.names():  # noqa: ASYNC110 (the watch thread)
            await asyncio.sleep(0.02)
    assert HEAVY_JOBS.counts() == {"pending": 0, "running": 0}
    await runner.close()
    await asyncio.wait_for(reconciling, 5)
