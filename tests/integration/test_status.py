"""``llmexec status`` (the real CLI, a subprocess) against the loopback Event Hubs peer and
Azurite: per partition the last enqueued sequence number, the checkpoint, the lag, the
owner, and the dead letters of the last hour."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.results import ResultFollower
from llmexec.embedded import running_pipeline
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import OutgoingEvent
from pipeline.bus.settings import BusSettings
from producers.client import RequestProducer
from schemas import ExecutionRequest, HubNames
from tests.conftest import make_config
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
HUBS = HubNames()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


@pytest.fixture
async def peer() -> AsyncIterator[EventHubsPeer]:
    async with EventHubsPeer(hubs={name: 2 for name in HUBS.all()}) as running:
        yield running
    gc.collect()


async def status(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmexec", "status", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode()


def partitions(doc: dict[str, Any], hub: str) -> dict[str, dict[str, Any]]:
    group = next(g for g in doc["groups"] if g["hub"] == hub)
    return {p["partition_id"]: p for p in group["partitions"]}


async def test_status_shows_checkpoints_lag_owners_and_dead_letters(
        peer: EventHubsPeer, azurite: str) -> None:
    container = f"cp-{uuid.uuid4().hex[:10]}"
    settings = BusSettings(event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
                           storage_connection_string=azurite,  # type: ignore[arg-type]
                           checkpoint_container=container,
                           eventhub_load_balancing_interval_s=0.5,
                           eventhub_ownership_expiry_s=3)
    env = {**os.environ, "EVENT_HUB_CONNECTION_STRING": peer.connection_string,
           "STORAGE_CONNECTION_STRING": azurite, "CHECKPOINT_CONTAINER": container}
    bus = build_bus(settings)
    cfg = make_config(checkpoint_every=1)
    requests = [ExecutionRequest(request_id=f"s{i}", code=f"print({i})") for i in range(6)]
    try:
        async with running_pipeline(cfg, bus=bus) as pipeline:
            follower = ResultFollower(bus, HUBS, consumer_group="status-e2e")
            try:
                await RequestProducer(bus.publisher(), HUBS.requests).submit_many(requests)
                await bus.publisher().publish(HUBS.requests, [
                    OutgoingEvent(b"not an event", partition_key="junk")])  # a dead letter
                await follower.wait_for([r.request_id for r in requests], timeout_s=60)
            finally:
                await follower.close()
            llm = pipeline.processors[0]
            for _ in range(100):  # every checkpoint written (checkpoint_every=1)
                cps = await bus.list_checkpoints(HUBS.requests, "llm-worker")
                if sum(c.sequence_number + 1 for c in cps) == len(requests) + 1:
                    break
                await asyncio.sleep(0.1)
            _, out = await status(env, "--json")
            live = json.loads(out)
            owned = sorted(llm.owned_partitions())
        # Workers gone: three more requests wait on the requests hub.
        await RequestProducer(bus.publisher(), HUBS.requests).submit_many(
            [ExecutionRequest(request_id=f"late{i}", code="print(0)") for i in range(3)])
        _, out = await status(env, "--json")
        after = json.loads(out)
        _, table = await status(env)
    finally:
        await bus.close()

    # While running: the requests group is caught up, every partition owned by the worker.
    reqs = partitions(live, HUBS.requests)
    assert sorted(reqs) == ["0", "1"] == owned
    assert sum(p["last_enqueued_sequence_number"] + 1 for p in reqs.values()) == 7
    assert all(p["checkpoint_sequence_number"] == p["last_enqueued_sequence_number"]
               for p in reqs.values())
    assert all(p["lag"] == 0 and p["owner"] for p in reqs.values())
    req_group = next(g for g in live["groups"] if g["hub"] == HUBS.requests)
    assert req_group["consumer_group"] == "llm-worker" and len(req_group["owners"]) == 1
    assert {g["hub"] for g in live["groups"]} == {HUBS.requests, HUBS.executions}
    # The undecodable event is the one dead letter of the last hour.
    assert live["dead_letters"]["by_cause"] == [
        {"source_hub": HUBS.requests, "error_type": "DecodeError", "count": 1}]

    # After: lag is what was published since the last checkpoint, as KEDA computes it.
    late = partitions(after, HUBS.requests)
    assert sum(p["lag"] for p in late.values()) == 3
    for pid, p in late.items():
        assert p["lag"] == p["last_enqueued_sequence_number"] - reqs[pid]["checkpoint_sequence_number"]
    assert after["dead_letters"]["total"] == 1
    # Without --json and not on a TTY: plain columns.
    assert table.splitlines()[0].split() == ["hub", "group", "partition", "last", "enqueued",
                                             "checkpoint", "lag", "owner", "owner", "age"]
    assert f"{HUBS.requests}/llm-worker: lag 3" in table
    assert "dead letters in the last 60 min: 1" in table
