"""Workers SIGKILLed mid-stream, on Event Hubs (worker processes, the loopback peer, blob
checkpoints in Azurite), then started again: every request has exactly one result after
dedupe, and every request answered more than once was in a killed worker's unfinished
window (events after its group's checkpoint at the kill) — nothing else ran twice."""

from __future__ import annotations

import gc
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from consumers.dedupe import Deduplicator
from llmexec.assembly import EXECUTOR_GROUP, LLM_GROUP
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import Bus
from schemas import ExecutionRequest, ExecutionResult, ResultStatus
from tests.contract.test_processor_contract import HubReader
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip
from tests.integration.test_eventhubs_pipeline import HUBS, Namespace, owned, publish, wait_until

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


@pytest.fixture
async def namespace(azurite: str) -> AsyncIterator[Namespace]:
    async with EventHubsPeer(hubs={name: 2 for name in HUBS.all()}) as peer:
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


async def window(ns: Namespace, bus: Bus, hub: str, group: str) -> set[str]:
    """Request ids of the events a group has not checkpointed (its unfinished window)."""
    covered = {c.partition_id: c.sequence_number for c in await bus.list_checkpoints(hub, group)}
    ids: set[str] = set()
    for pid in await bus.partition_ids(hub):
        for stored in ns.peer.events(hub, pid):
            if stored.sequence_number > covered.get(pid, -1) and stored.partition_key:
                ids.add(stored.partition_key)
    return ids


@pytest.mark.parametrize("victims", [("executor",), ("llm",), ("llm", "executor")])
async def test_workers_sigkilled_mid_stream(namespace: Namespace, victims: tuple[str, ...]) -> None:
    procs = {kind: namespace.start_worker(kind) for kind in ("llm", "executor")}
    await wait_until(lambda: all(len(owned(port)) == 2 for _, port in procs.values()), 60,
                     "workers owning every partition")
    bus = build_bus(namespace.settings())
    reader = HubReader(bus, HUBS.results)  # raw: every copy, not deduplicated
    ids = [f"k{i}" for i in range(30)]
    requests = [ExecutionRequest(request_id=i, code="import time\ntime.sleep(0.1)\nprint('ok')")
                for i in ids]

    def seen() -> list[ExecutionResult]:
        return [r for r in reader.decoded() if isinstance(r, ExecutionResult)]

    try:
        await publish(bus, requests)
        await wait_until(lambda: len(seen()) >= 6, 60, "first results")
        for kind in victims:
            procs[kind][0].kill()  # SIGKILL: no shutdown, no checkpoint, ownership left to expire
            procs[kind][0].wait()
        allowed = set()
        if "executor" in victims:
            allowed |= await window(namespace, bus, HUBS.executions, EXECUTOR_GROUP)
        if "llm" in victims:
            allowed |= await window(namespace, bus, HUBS.requests, LLM_GROUP)
        for kind in victims:
            procs[kind] = namespace.start_worker(kind)
        await wait_until(lambda: {r.request_id for r in seen()} >= set(ids), 120,
                         "every request answered after the restart")
        await wait_until(lambda: all(len(owned(port)) == 2 for _, port in procs.values()), 60,
                         "restarted workers owning every partition")
    finally:
        await reader.close()
    results = seen()
    dedupe = Deduplicator()
    unique = [r for r in results if dedupe.first_time(r.dedupe_key)]
    assert sorted(r.request_id for r in unique) == sorted(ids)
    assert all(r.status is ResultStatus.SUCCEEDED for r in unique)
    repeated = {rid for rid, n in Counter(r.request_id for r in results).items() if n > 1}
    assert repeated <= allowed, f"ran twice outside the unfinished window: {repeated - allowed}"
    print(f"victims={victims} window={len(allowed)} repeated={len(repeated)}")
    # The executions hub holds these requests' events only (no stray ids were made up).
    for pid in await bus.partition_ids(HUBS.executions):
        for stored in namespace.peer.events(HUBS.executions, pid):
            assert stored.partition_key in set(ids)
    await bus.close()
