"""Claim check: big events travel as blobs, transparently; a lost blob is dead-lettered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from llmexec.config import AppConfig
from llmexec.embedded import run_embedded
from pipeline.bus.claimcheck import CLAIM_PROPERTY, ClaimCheckBus
from pipeline.bus.memory import MemoryBus, MemoryPayloadStore
from pipeline.bus.ports import OutgoingEvent, PartitionContext, ReceivedEvent
from schemas import DecodeError, ExecutionRequest, ResultStatus, decode_event


class Collect:
    def __init__(self) -> None:
        self.events: list[ReceivedEvent] = []

    async def on_open(self, ctx: PartitionContext) -> None: ...
    async def on_close(self, ctx: PartitionContext, reason: str) -> None: ...
    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        self.events.extend(events)


async def read_all(bus: object, hub: str, n: int) -> list[ReceivedEvent]:
    got = Collect()
    sub = bus.subscribe(hub, "g")  # type: ignore[attr-defined]
    task = asyncio.create_task(sub.run(got))
    for _ in range(200):
        if len(got.events) >= n:
            break
        await asyncio.sleep(0.02)
    await sub.stop()
    await task
    return got.events


async def test_big_body_goes_by_reference_and_comes_back_whole() -> None:
    inner = MemoryBus(partitions=2)
    store = MemoryPayloadStore()
    bus = ClaimCheckBus(inner, store)
    big = b"x" * (3 * 1024 * 1024)
    await bus.publisher().publish("h", [OutgoingEvent(big, "k", {"request_id": "r1"}),
                                        OutgoingEvent(b"small", "k")])
    # On the wire: a small envelope, flagged.
    raw = await read_all(inner, "h", 2)
    envelope = json.loads(raw[0].body)
    assert raw[0].properties[CLAIM_PROPERTY] == "1" and len(raw[0].body) < 1024
    assert envelope["size"] == len(big) and envelope["request_id"] == "r1"
    # Through the claim-check bus: the original, and the flag gone.
    resolved = await read_all(bus, "h", 2)
    assert [e.body for e in resolved] == [big, b"small"]
    assert CLAIM_PROPERTY not in resolved[0].properties


async def test_same_payload_twice_stores_one_blob() -> None:
    store = MemoryPayloadStore()
    bus = ClaimCheckBus(MemoryBus(partitions=1), store)
    big = b"y" * (2 * 1024 * 1024)
    for _ in range(2):
        await bus.publisher().publish("h", [OutgoingEvent(big, "k")])
    assert len(store.names()) == 1


async def test_envelope_whose_blob_is_gone_fails_decoding_with_a_clear_reason() -> None:
    store = MemoryPayloadStore()
    inner = MemoryBus(partitions=1)
    bus = ClaimCheckBus(inner, store)
    await bus.publisher().publish("h", [OutgoingEvent(b"z" * (2 * 1024 * 1024), "k")])
    store.clear()
    (event,) = await read_all(bus, "h", 1)
    try:
        decode_event(event.body)
    except DecodeError as exc:
        assert "claim-check payload could not be fetched" in str(exc)
    else:
        raise AssertionError("an unresolved envelope must not decode")


async def test_two_megabyte_result_travels_through_the_embedded_pipeline(config: AppConfig) -> None:
    code = "import sys\nprint('a' * 1_000_000)\nprint('b' * 1_000_000, file=sys.stderr)"
    (result,) = (await run_embedded(config, [ExecutionRequest(code=code)])).values()
    assert result.status is ResultStatus.SUCCEEDED
    assert len(result.stdout) + len(result.stderr) > 2_000_000
