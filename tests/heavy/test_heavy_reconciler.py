"""The Kubernetes runner and the reconciler against the fake API, with the real client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client

from executor_worker.handler import ExecutorWorker
from executor_worker.heavy.contract import encode_record
from executor_worker.heavy.kube import CLAIMED_BY, REPORTED, KubernetesJobRunner
from executor_worker.heavy.reconciler import Reconciler
from executor_worker.heavy.render import job_name
from executor_worker.results import sandbox_job
from executor_worker.sandbox import SandboxOutcome
from pipeline.errors import ConfigError
from schemas import ExecutionCommand, ExecutionResult, RepairRequest, ResultStatus
from tests.fakes.kube_api import FakeKubeApi
from tests.heavy.conftest import HUBS, ListPublisher, RunnerFactory, command, heavy_settings

OK = SandboxOutcome(status="succeeded", exit_code=0, stdout="42\n", stderr="",
                    duration_ms=12.0, layers=("process", "seccomp"))


async def submit(runner: KubernetesJobRunner, cmd: ExecutionCommand) -> str:
    assert await runner.submit(cmd, sandbox_job(cmd, heavy_settings())) is None
    return job_name(cmd.request_id, cmd.attempt)


class Reporting:
    """A reconciler running on a runner, stopped at the end of the test."""

    def __init__(self, runner: KubernetesJobRunner) -> None:
        self.runner, self.publisher = runner, ListPublisher()
        self.task = asyncio.create_task(Reconciler(runner, self.publisher, HUBS).run())

    async def wait(self, n: int = 1, timeout: float = 5.0) -> list[tuple[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.publisher.published) < n:  # noqa: ASYNC110 (polls a list)
                await asyncio.sleep(0.02)
        return self.publisher.published

    async def stop(self) -> None:
        await self.runner.close()
        await asyncio.wait_for(self.task, 5)


async def until(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (polls the fake API's state)
            await asyncio.sleep(0.02)


async def test_submit_creates_job_and_owned_configmap_and_resubmit_is_a_409(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    runner = runners()
    name = await submit(runner, command())
    job, cm = kube.get("jobs", "default", name), kube.get("configmaps", "default", name)
    assert job is not None and cm is not None
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert await submit(runner, command()) == name  # a redelivered command: no error
    assert kube.count("POST", "/jobs") == 2 and len(kube.list("jobs", "default")["items"]) == 1


async def test_succeeded_job_publishes_the_record_from_the_pod_log(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    runner = runners()
    rep = Reporting(runner)
    name = await submit(runner, command(metadata={"team": "x"}))
    kube.finish_job(name, log="starting\n" + encode_record(OK) + "\n")
    ((hub, result),) = await rep.wait()
    assert hub == "results" and isinstance(result, ExecutionResult)
    assert (result.request_id, result.attempt, result.status) == ("req-1", 1, "succeeded")
    assert result.stdout == "42\n" and result.route == "heavy" and result.metadata == {"team": "x"}
    assert result.sandbox == ["k8s-pod", "process", "seccomp"]
    await until(lambda: (kube.get("jobs", "default", name) or {})["metadata"]
                .get("annotations", {}).get(REPORTED) == "true")
    await asyncio.sleep(0.3)  # the reported Job's MODIFIED events publish nothing more
    assert len(rep.publisher.published) == 1
    await rep.stop()


async def test_deadline_exceeded_is_timed_out(kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners())
    name = await submit(rep.runner, command())
    kube.add_pod(name, phase="Failed", container_state={"terminated": {"exitCode": 137}})
    kube.finish_job(name, succeeded=False, reason="DeadlineExceeded")
    ((_, result),) = await rep.wait()
    assert result.status is ResultStatus.TIMED_OUT and result.error.code == "timeout"
    assert "deadline" in result.error.message
    await rep.stop()


async def test_oom_killed_is_failed_with_the_memory_limit(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners())
    name = await submit(rep.runner, command())
    kube.finish_job(name, succeeded=False, reason="PodFailurePolicy", container_state={
        "terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    ((_, result),) = await rep.wait()
    assert result.status is ResultStatus.FAILED and result.error.code == "memory_limit"
    assert "8Gi" in result.error.message
    await rep.stop()


async def test_pod_deleted_and_job_deleted_still_answer(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners())
    gone_pod = await submit(rep.runner, command("a"))
    kube.finish_job(gone_pod, succeeded=False, reason="BackoffLimitExceeded")
    gone_job = await submit(rep.runner, command("b"))
    kube.delete("jobs", "default", gone_job)
    published = await rep.wait(2)
    by_id = {r.request_id: r for _, r in published}
    assert by_id["a"].error.code == "pod_deleted"
    assert by_id["b"].error.code == "job_deleted" and by_id["b"].status is ResultStatus.FAILED
    await rep.stop()


async def test_image_pull_failure_fails_the_request_and_deletes_the_job(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners(heavy_job_pending_timeout_s=0.01))
    name = await submit(rep.runner, command())
    kube.add_pod(name, phase="Pending", container_state={
        "waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}})
    ((_, result),) = await rep.wait(timeout=8)
    assert result.error.code == "image_pull" and "ImagePullBackOff" in result.error.message
    await until(lambda: kube.get("jobs", "default", name) is None)
    assert kube.get("configmaps", "default", name) is None  # owned: collected with the Job
    await rep.stop()


async def test_failed_llm_attempt_becomes_a_repair_request(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners())
    cmd = command(source="llm", prompt="compute it")
    name = await submit(rep.runner, cmd)
    bad = SandboxOutcome(status="failed", exit_code=1, stdout="", stderr="boom",
                         duration_ms=1.0, reason_code="nonzero_exit", reason="exited 1")
    kube.finish_job(name, log=encode_record(bad) + "\n")
    ((hub, event),) = await rep.wait()
    assert hub == "requests" and isinstance(event, RepairRequest)
    assert event.command == cmd and event.failure.stderr == "boom"
    await rep.stop()


async def test_two_replicas_publish_once(kube: FakeKubeApi, runners: RunnerFactory) -> None:
    a, b = Reporting(runners("replica-a")), Reporting(runners("replica-b"))
    names = [await submit(a.runner, command(f"r{i}")) for i in range(4)]
    await asyncio.sleep(0.2)  # both watches are up
    for name in names:
        kube.finish_job(name, log=encode_record(OK) + "\n")
    await until(lambda: len(a.publisher.published) + len(b.publisher.published) >= 4)
    await asyncio.sleep(1.5)  # past a resync: nobody publishes again
    ids = [r.request_id for _, r in a.publisher.published + b.publisher.published]
    assert sorted(ids) == ["r0", "r1", "r2", "r3"]
    for name in names:
        ann = kube.get("jobs", "default", name)["metadata"]["annotations"]  # type: ignore[index]
        assert ann[REPORTED] == "true" and ann[CLAIMED_BY] in ("replica-a", "replica-b")
    await a.stop()
    await b.stop()


async def test_executor_restart_between_submit_and_completion_loses_nothing(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    first = runners("before-restart")
    name = await submit(first, command())
    await first.close()  # the executor goes away while the Job runs
    kube.finish_job(name, log=encode_record(OK) + "\n")
    rep = Reporting(runners("after-restart"))  # found by the initial list, not by a watch
    ((_, result),) = await rep.wait()
    assert result.request_id == "req-1" and result.status is ResultStatus.SUCCEEDED
    await rep.stop()


async def test_stale_claim_of_a_dead_replica_is_taken_over(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    runner = runners("survivor")
    name = await submit(runner, command())
    kube.finish_job(name, log=encode_record(OK) + "\n")
    kube.patch("jobs", "default", name, {"metadata": {"annotations": {
        CLAIMED_BY: "dead", "llmexec/claimed-at": "1000.0"}}})
    rep = Reporting(runner)
    ((_, result),) = await rep.wait()
    assert result.status is ResultStatus.SUCCEEDED
    await rep.stop()


async def test_start_checks_the_api_and_fails_with_one_line(runners: RunnerFactory) -> None:
    await runners().start()  # the fake answers: fine
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    api.configuration.retries = 0
    broken = KubernetesJobRunner(heavy_settings(), api)
    with pytest.raises(ConfigError, match="HEAVY_RUNNER=kubernetes"):
        await broken.start()
    api.close()


async def test_handler_submits_and_emits_nothing_so_the_partition_moves_on(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    worker = ExecutorWorker(hubs=HUBS, light=None, heavy=runners(),  # type: ignore[arg-type]
                            settings=heavy_settings())
    assert await worker.handle(command(), None) == []  # type: ignore[arg-type]
    assert kube.get("jobs", "default", job_name("req-1", 1)) is not None


async def test_a_refused_list_is_tried_again_soon_not_after_a_fixed_pause(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    """The watch's listing is refused three times in a row (503, an overloaded API server):
    it lists again at once, then less often, so a finished Job is still reported within
    moments. (A fixed 5 s pause after every failure left it unseen 15 s; CI once timed out
    on a single dropped connection.)"""
    submitter = runners(owner="replica-a")
    name = await submit(submitter, command())
    kube.finish_job(name, log=encode_record(OK) + "\n")
    kube.list_failures = 3
    rep = Reporting(runners(owner="replica-b"))  # its watch starts with a refused list
    try:
        [(_, result)] = await rep.wait(1, timeout=3.0)
        assert isinstance(result, ExecutionResult) and result.status == ResultStatus.SUCCEEDED
        assert [code for code, _ in kube.refused].count(503) == 3
        assert kube.list_failures == 0
    finally:
        await rep.stop()
