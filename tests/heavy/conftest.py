"""Fixtures for the heavy route: the fake Kubernetes API and runners talking to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from kubernetes import client

from executor_worker.heavy.kube import KubernetesJobRunner
from executor_worker.observe import HEAVY_JOBS
from executor_worker.settings import ExecutorSettings
from pipeline.bus.ports import OutgoingEvent
from schemas import ExecRoute, ExecutionCommand, HubNames, decode_event
from tests.fakes.kube_api import FakeKubeApi

HUBS = HubNames("requests", "executions", "results", "deadletter")


def heavy_settings(**over: Any) -> ExecutorSettings:
    base: dict[str, Any] = {"heavy_runner": "kubernetes", "heavy_job_namespace": "default",
                            "heavy_job_resync_s": 1.0}
    return ExecutorSettings(**{**base, **over})


def command(request_id: str = "req-1", attempt: int = 1, **over: Any) -> ExecutionCommand:
    fields: dict[str, Any] = {"code": "print('hi')", "route": ExecRoute.HEAVY, "inputs": {"x": 1}}
    return ExecutionCommand(request_id=request_id, attempt=attempt, **{**fields, **over})


class ListPublisher:
    """Collects what a reconciler publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        self.published.extend((hub, decode_event(e.body)) for e in events)

    async def close(self) -> None:
        pass


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi().start()
    yield api
    api.stop()


class RunnerFactory:
    def __init__(self, kube: FakeKubeApi) -> None:
        self.kube = kube
        self.made: list[tuple[KubernetesJobRunner, client.ApiClient]] = []

    def __call__(self, owner: str = "replica-a", **settings: Any) -> KubernetesJobRunner:
        api = client.ApiClient(client.Configuration(host=self.kube.url))
        runner = KubernetesJobRunner(heavy_settings(**settings), api, owner_id=owner)
        self.made.append((runner, api))
        return runner


@pytest.fixture
async def runners(kube: FakeKubeApi) -> AsyncIterator[RunnerFactory]:
    factory = RunnerFactory(kube)
    yield factory
    for runner, api in factory.made:
        await runner.close()
        api.close()
    # Closed runners leave nothing counted (the gauge is one per process).
    assert HEAVY_JOBS.counts() == {"pending": 0, "running": 0}
