"""The whole pipeline on Event Hubs: workers as separate OS processes, the real SDKs, our
loopback AMQP peer, checkpoints in Azurite."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.storage.blob.aio import ContainerClient

from consumers.dedupe import Deduplicator
from consumers.results import ResultFollower
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import Bus
from pipeline.bus.settings import BusSettings
from producers.client import RequestProducer
from schemas import ExecutionRequest, ExecutionResult, HubNames, ResultStatus
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

HUBS = HubNames()
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


@dataclass
class Namespace:
    peer: EventHubsPeer
    storage: str
    container: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "EVENT_HUB_CONNECTION_STRING": self.peer.connection_string,
            "STORAGE_CONNECTION_STRING": self.storage,
            "CHECKPOINT_CONTAINER": self.container,
            "EVENTHUB_LOAD_BALANCING_INTERVAL_S": "0.5",
            "EVENTHUB_OWNERSHIP_EXPIRY_S": "3",
            "CHECKPOINT_INTERVAL_S": "0.5",
            "SHUTDOWN_GRACE_S": "3",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }

    def settings(self) -> BusSettings:
        return BusSettings(event_hub_connection_string=self.peer.connection_string,  # type: ignore[arg-type]
                           storage_connection_string=self.storage,  # type: ignore[arg-type]
                           checkpoint_container=self.container,
                           eventhub_load_balancing_interval_s=0.5,
                           eventhub_ownership_expiry_s=3)

    def start_worker(self, kind: str) -> tuple[subprocess.Popen[str], int]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmexec", "worker", kind, "--port", str(port)],
            env=self.env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc, port


@pytest.fixture
async def namespace(azurite: str) -> AsyncIterator[Namespace]:
    hubs = {name: 4 for name in HUBS.all()}
    async with EventHubsPeer(hubs=hubs) as peer:
        ns = Namespace(peer, azurite, f"cp-{uuid.uuid4().hex[:10]}")
        try:
            yield ns
        finally:
            for proc in ns.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in ns.procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    gc.collect()


def ready(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/ready", timeout=1) as r:
            return dict(json.loads(r.read()))
    except OSError:
        return None


async def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def owned(port: int) -> list[str]:
    status = ready(port)
    return list(status.get("partitions", [])) if status else []  # type: ignore[arg-type]


async def publish(bus: Bus, requests: list[ExecutionRequest]) -> None:
    await RequestProducer(bus.publisher(), HUBS.requests).submit_many(requests)


async def test_requests_flow_through_worker_processes_with_blob_checkpoints(
    namespace: Namespace,
) -> None:
    _, llm_port = namespace.start_worker("llm")
    _, exec_port = namespace.start_worker("executor")
    await wait_until(lambda: len(owned(llm_port)) == 4 and len(owned(exec_port)) == 4, 60,
                     "workers owning all partitions")
    bus = build_bus(namespace.settings())
    follower = ResultFollower(bus, HUBS, consumer_group="e2e")
    requests = [ExecutionRequest(request_id=f"r{i}", code=f"print({i} ** 2)") for i in range(12)]
    requests.append(ExecutionRequest(request_id="big", code="print('z' * 2_000_000)"))
    requests.append(ExecutionRequest(request_id="prompt", prompt="no key here"))
    try:
        await publish(bus, requests)
        got = await follower.wait_for([r.request_id for r in requests], timeout_s=90)
    finally:
        await follower.close()
    assert [got[f"r{i}"].stdout for i in range(12)] == [f"{i * i}\n" for i in range(12)]
    assert got["big"].status is ResultStatus.SUCCEEDED  # ~2 MB of stdout: went by claim check
    assert len(got["big"].stdout) > 1_000_000
    assert got["prompt"].error is not None and got["prompt"].error.code == "llm_not_configured"

    # Checkpoints are the SDK's blob metadata (what KEDA's blobMetadata strategy reads).
    await asyncio.sleep(1.5)
    container = ContainerClient.from_connection_string(namespace.storage, namespace.container)
    async with container:
        found = {}
        async for blob in container.list_blobs(name_starts_with="", include=["metadata"]):
            if "/checkpoint/" in blob.name:
                found[blob.name] = blob.metadata
    executions = {n: m for n, m in found.items() if f"/{HUBS.executions}/" in n}
    assert executions, found
    assert all({"sequencenumber", "offset"} <= set(m) for m in executions.values())
    await bus.close()


async def test_sigkill_of_one_executor_loses_nothing(namespace: Namespace) -> None:
    _, llm_port = namespace.start_worker("llm")
    victim, port_a = namespace.start_worker("executor")
    _, port_b = namespace.start_worker("executor")
    await wait_until(lambda: len(owned(port_a)) == 2 and len(owned(port_b)) == 2
                     and len(owned(llm_port)) == 4, 60, "executors splitting partitions")
    bus = build_bus(namespace.settings())
    follower = ResultFollower(bus, HUBS, consumer_group="e2e-kill")
    ids = [f"k{i}" for i in range(40)]
    requests = [ExecutionRequest(request_id=i, code="import time\ntime.sleep(0.15)\nprint('ok')")
                for i in ids]
    seen: list[ExecutionResult] = []

    async def collect() -> None:
        async for result in follower.results():
            seen.append(result)

    collecting = asyncio.create_task(collect())
    try:
        await publish(bus, requests)
        await wait_until(lambda: len(seen) >= 8, 60, "first results")
        victim.kill()  # SIGKILL: no shutdown, no checkpoint, ownership left to expire
        victim.wait()
        await wait_until(lambda: {r.request_id for r in seen} >= set(ids), 120,
                         "every request answered after the kill")
    finally:
        collecting.cancel()
        await follower.close()
        await bus.close()
    assert set(owned(port_b)) == {"0", "1", "2", "3"}  # the survivor took over
    dedupe = Deduplicator()
    unique = [r for r in seen if dedupe.first_time(r.dedupe_key)]
    assert sorted(r.request_id for r in unique) == sorted(ids)
    assert all(r.status is ResultStatus.SUCCEEDED for r in unique)


async def test_cli_submit_wait_and_results_follow_against_event_hubs(namespace: Namespace) -> None:
    _, llm_port = namespace.start_worker("llm")
    _, exec_port = namespace.start_worker("executor")
    await wait_until(lambda: len(owned(llm_port)) == 4 and len(owned(exec_port)) == 4, 60,
                     "workers owning all partitions")
    env = {**namespace.env(), "LOG_LEVEL": "WARNING"}
    submit = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmexec", "submit", "--code", "print(6 * 7)",
        "--request-id", "cli-1", "--wait", "--json", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(submit.communicate(), 120)
    assert submit.returncode == 0, err.decode()[-2000:]
    (line,) = out.decode().splitlines()
    assert json.loads(line)["stdout"] == "42\n"

    follow = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmexec", "results", "follow", "--from", "earliest",
        "--request-id", "cli-1", "--count", "1", "--json", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(follow.communicate(), 60)
    assert follow.returncode == 0, err.decode()[-2000:]
    assert json.loads(out.decode())["request_id"] == "cli-1"
