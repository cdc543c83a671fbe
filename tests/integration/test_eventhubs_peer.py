"""The loopback Event Hubs peer against the real azure-eventhub SDK (and Azurite checkpoints).

These prove the test double is faithful enough for adapter tests: if one fails after an SDK
upgrade, the peer (tests/eventhubs_peer) needs fixing before anything built on it is trusted.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import EventDataSendError
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import ContainerClient

from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = {"retry_backoff_factor": 0.05, "retry_total": 3}  # SDK retries, quick for tests


@pytest.fixture
def peer() -> Iterator[EventHubsPeer]:
    with EventHubsPeer({"requests": 4, "results": 2}) as running:
        yield running


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    with azurite_or_skip() as conn_str:
        yield conn_str


def producer(peer: EventHubsPeer, hub: str = "requests") -> EventHubProducerClient:
    return EventHubProducerClient.from_connection_string(
        peer.connection_string, eventhub_name=hub, **FAST
    )


def consumer(peer: EventHubsPeer, hub: str = "requests", **kwargs: Any) -> EventHubConsumerClient:
    # receive() only returns after close() once its load-balancing sleep ends: keep it short.
    options = {"consumer_group": "$Default", "load_balancing_interval": 0.2, **FAST, **kwargs}
    return EventHubConsumerClient.from_connection_string(
        peer.connection_string, eventhub_name=hub, **options
    )


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


class Receiver:
    """Runs ``client.receive(...)`` calls in tasks and records events per partition.

    ``Receiver(client, **receive_kwargs)`` starts one receive on entry; ``start()`` adds more
    (one client may receive from several partitions at once, each from its own position).
    """

    def __init__(self, client: EventHubConsumerClient, **receive_kwargs: Any) -> None:
        self.client = client
        self.events: dict[str, list[Any]] = defaultdict(list)
        self.errors: list[BaseException] = []
        self.owned: set[str] = set()
        self.on_event_hook: Callable[[Any, Any], Awaitable[None]] | None = None
        self._kwargs = receive_kwargs
        self._tasks: list[asyncio.Task[None]] = []

    async def _on_event(self, context: Any, event: Any) -> None:
        if event is None:
            return
        self.events[context.partition_id].append(event)
        if self.on_event_hook is not None:
            await self.on_event_hook(context, event)

    async def _on_error(self, context: Any, error: BaseException) -> None:
        self.errors.append(error)

    async def _on_init(self, context: Any) -> None:
        self.owned.add(context.partition_id)

    async def _on_close(self, context: Any, reason: Any) -> None:
        self.owned.discard(context.partition_id)

    def count(self) -> int:
        return sum(len(v) for v in self.events.values())

    def start(self, **receive_kwargs: Any) -> None:
        self._tasks.append(
            asyncio.create_task(
                self.client.receive(
                    self._on_event,
                    on_error=self._on_error,
                    on_partition_initialize=self._on_init,
                    on_partition_close=self._on_close,
                    **receive_kwargs,
                )
            )
        )

    async def __aenter__(self) -> Receiver:
        if self._kwargs:
            self.start(**self._kwargs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 10)


def bodies(events: list[Any]) -> list[str]:
    return [e.body_as_str() for e in events]


# -- management ------------------------------------------------------------------------------


async def test_management_properties(peer: EventHubsPeer) -> None:
    async with producer(peer) as client:
        assert await client.get_partition_ids() == ["0", "1", "2", "3"]
        props = await client.get_eventhub_properties()
        assert props["eventhub_name"] == "requests"
        assert props["partition_ids"] == ["0", "1", "2", "3"]
        empty = await client.get_partition_properties("2")
        assert empty["is_empty"] and empty["last_enqueued_sequence_number"] == -1

        await client.send_batch([EventData("a"), EventData("b")], partition_id="2")
        after = await client.get_partition_properties("2")
        assert after["id"] == "2" and not after["is_empty"]
        assert after["last_enqueued_sequence_number"] == 1
        assert after["last_enqueued_offset"] == peer.events("requests", "2")[1].offset.__str__()


# -- sending and receiving -------------------------------------------------------------------


async def test_partition_keys_route_stably_and_order_is_kept(peer: EventHubsPeer) -> None:
    keys = [f"request-{i}" for i in range(12)]
    async with producer(peer) as client:
        for round_ in range(2):
            for key in keys:
                batch = await client.create_batch(partition_key=key)
                for n in range(3):
                    batch.add(EventData(f"{key}:{round_ * 3 + n}"))
                await client.send_batch(batch)
        single = EventData("to-1")
        single.properties = {"attempt": 2, "kind": "retry"}
        single.content_type = "application/json"
        await client.send_event(single, partition_id="1")

    async with Receiver(consumer(peer), starting_position="-1") as received:
        await wait_for(lambda: received.count() == len(keys) * 6 + 1, what="all events")

    partitions_of: dict[str, set[str]] = defaultdict(set)
    for partition_id, events in received.events.items():
        assert [e.sequence_number for e in events] == list(range(len(events)))
        offsets = [int(e.offset) for e in events]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        per_key: dict[str, list[int]] = defaultdict(list)
        for event in events:
            if event.body_as_str() == "to-1":
                assert partition_id == "1" and event.partition_key is None
                # Sections the producer wrote come back byte for byte (pyamqp: bytes keys).
                assert event.properties == {b"attempt": 2, b"kind": b"retry"}
                assert event.content_type == "application/json"
                continue
            key, n = event.body_as_str().split(":")
            assert event.partition_key == key.encode()
            per_key[key].append(int(n))
            partitions_of[key].add(partition_id)
        for key, ns in per_key.items():
            assert ns == list(range(6)), f"order broken for {key}"
    assert all(len(p) == 1 for p in partitions_of.values()), partitions_of
    assert len({next(iter(p)) for p in partitions_of.values()}) > 1, "keys should spread"
    # The same hash as the SDK's buffered producer (and the service) uses.
    from azure.eventhub._buffered_producer._partition_resolver import PartitionResolver

    resolver = PartitionResolver(["0", "1", "2", "3"])
    for key, partitions in partitions_of.items():
        assert partitions == {resolver.get_partition_id_by_partition_key(key)}


async def test_receive_from_offset_sequence_number_time_and_latest(peer: EventHubsPeer) -> None:
    async with producer(peer) as client:
        await client.send_batch([EventData(f"e{i}") for i in range(5)], partition_id="0")
        await asyncio.sleep(0.01)  # e5.. get a later enqueued time (ms) than e4
        await client.send_batch([EventData(f"e{i}") for i in range(5, 10)], partition_id="0")
        stored = peer.events("requests", "0")
        assert [s.sequence_number for s in stored] == list(range(10))
        assert stored[5].enqueued_time_ms > stored[4].enqueued_time_ms
        offset_of_e4 = str(stored[4].offset)
        time_of_e5 = datetime.fromtimestamp(stored[5].enqueued_time_ms / 1000, UTC)
        cases: list[tuple[dict[str, Any], range, str]] = [
            ({"starting_position": "-1"}, range(10), "$Default"),
            ({"starting_position": "-1"}, range(10), "audit"),  # groups are independent
            ({"starting_position": offset_of_e4}, range(5, 10), "$Default"),
            (
                {"starting_position": offset_of_e4, "starting_position_inclusive": True},
                range(4, 10),
                "$Default",
            ),
            ({"starting_position": 7, "starting_position_inclusive": True}, range(7, 10), "b"),
            ({"starting_position": 7}, range(8, 10), "$Default"),
            (
                {"starting_position": time_of_e5, "starting_position_inclusive": True},
                range(5, 10),
                "$Default",
            ),
            ({"starting_position": "@latest"}, range(0), "$Default"),
        ]
        receivers = [
            Receiver(consumer(peer, consumer_group=group), partition_id="0", **position)
            for position, _, group in cases
        ]
        for receiver in receivers:
            await receiver.__aenter__()
        try:
            wanted = [
                (receiver, len(numbers))
                for receiver, (_, numbers, _) in zip(receivers, cases, strict=True)
            ]
            for receiver, n in wanted:
                await wait_for(lambda r=receiver, n=n: r.count() == n, what=f"{n} events")
            await asyncio.sleep(0.3)  # the @latest receiver's link is attached by now
            await client.send_event(EventData("new"), partition_id="0")  # live tail for all
            for receiver, n in wanted:
                await wait_for(lambda r=receiver, n=n: r.count() == n + 1, what="the new event")
        finally:
            await asyncio.gather(*(r.__aexit__(None, None, None) for r in receivers))
    for receiver, (position, numbers, _) in zip(receivers, cases, strict=True):
        assert bodies(receiver.events["0"]) == [*(f"e{i}" for i in numbers), "new"], position


async def test_message_over_1mb_is_refused(peer: EventHubsPeer) -> None:
    async with producer(peer) as client:
        batch = await client.create_batch()
        assert batch.max_size_in_bytes == 1024 * 1024  # the peer's attach max-message-size
        with pytest.raises(ValueError, match="size limit"):
            batch.add(EventData(b"x" * (1024 * 1024 + 1)))


async def test_peer_rejects_oversized_message_the_sdk_sent() -> None:
    # Advertise 4 MB but enforce 1 MB, so the SDK sends a message the peer must refuse.
    async with EventHubsPeer({"requests": 1}, advertised_max_message_size=4 * 1024 * 1024) as p:
        async with producer(p) as client:
            with pytest.raises(EventDataSendError, match="MessageSizeExceeded"):
                await client.send_event(EventData(b"x" * (1024 * 1024 + 100)))
            await client.send_event(EventData(b"y" * (1024 * 1024 - 1024)))  # still works
        assert len(p.events("requests", "0")) == 1
        async with Receiver(consumer(p), starting_position="-1") as r:
            await wait_for(lambda: r.count() == 1, what="the 1 MB event")
        assert r.events["0"][0].body_as_str() == "y" * (1024 * 1024 - 1024)


async def test_higher_owner_level_steals_the_partition(peer: EventHubsPeer) -> None:
    async with (
        Receiver(consumer(peer), partition_id="3", owner_level=1, starting_position="-1") as old,
        producer(peer) as client,
    ):
        await client.send_event(EventData("before"), partition_id="3")
        await wait_for(lambda: old.count() == 1, what="first receiver's event")
        async with Receiver(
            consumer(peer), partition_id="3", owner_level=2, starting_position="-1"
        ) as new:
            await wait_for(lambda: new.count() == 1, what="second receiver attached")
            await wait_for(lambda: bool(old.errors), what="the stolen receiver's error")
            await client.send_event(EventData("after"), partition_id="3")
            await wait_for(lambda: new.count() == 2, what="second event")
            await asyncio.sleep(0.3)
            # While the epoch-2 receiver is attached, the old one's retries are refused.
            assert bodies(old.events["3"]) == ["before"]
    assert bodies(new.events["3"]) == ["before", "after"]
    assert "amqp:link:stolen" in str(old.errors[0]) and "higher epoch" in str(old.errors[0])


# The SDK abandons its reset socket unclosed (see collect_dropped_sdk_sockets).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_connection_drop_and_sdk_recovers(peer: EventHubsPeer) -> None:
    async with (
        producer(peer) as client,
        Receiver(consumer(peer), partition_id="0", starting_position="-1") as r,
    ):
        await client.send_event(EventData("one"), partition_id="0")
        await wait_for(lambda: r.count() == 1, what="first event")
        assert await peer.drop_connections() >= 2
        await client.send_event(EventData("two"), partition_id="0")  # SDK reconnects
        await wait_for(lambda: r.count() == 2, timeout=20, what="event after the drop")
        # A receiver link detached with an error (socket kept): the SDK re-attaches it.
        # (Producers are left alone: with 5.15.1 the next send on a force-detached producer
        # link sometimes fails with EventDataSendError(UnknownError) instead of retrying.)
        assert await peer.force_detach(producers=False) == 1
        await client.send_event(EventData("three"), partition_id="0")
        await wait_for(lambda: r.count() == 3, timeout=20, what="event after the detach")
        await asyncio.sleep(0.2)
    # Each recovery resumed after the last offset seen: nothing lost, nothing twice.
    assert bodies(r.events["0"]) == ["one", "two", "three"]
    collect_dropped_sdk_sockets()


def collect_dropped_sdk_sockets() -> None:
    """azure-eventhub 5.15.1 abandons its socket, unclosed, when the server resets the
    connection (the real service would hit the same path). Collect those now with their
    ResourceWarning silenced, instead of failing whichever later test the GC runs in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# -- checkpoints on Azurite ------------------------------------------------------------------


@pytest.fixture
async def container(azurite: str) -> AsyncIterator[str]:
    name = f"cp-{uuid.uuid4().hex[:12]}"
    async with ContainerClient.from_connection_string(azurite, name) as client:
        await client.create_container()
        yield name


@pytest.fixture
async def checkpoint_store(
    azurite: str, container: str
) -> AsyncIterator[Callable[[], BlobCheckpointStore]]:
    """New BlobCheckpointStores on the test's container; the consumer client never closes
    its store (aiohttp session), so the fixture does."""
    stores: list[BlobCheckpointStore] = []

    def make() -> BlobCheckpointStore:
        stores.append(BlobCheckpointStore.from_connection_string(azurite, container))
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


async def test_checkpoint_metadata_and_resume(
    peer: EventHubsPeer,
    azurite: str,
    container: str,
    checkpoint_store: Callable[[], BlobCheckpointStore],
) -> None:
    async with producer(peer) as client:
        await client.send_batch([EventData(f"e{i}") for i in range(5)], partition_id="2")
    stored = peer.events("requests", "2")

    async def checkpoint_at_e2(context: Any, event: Any) -> None:
        if event.body_as_str() == "e2":
            await context.update_checkpoint(event)

    first = consumer(peer, checkpoint_store=checkpoint_store())
    async with Receiver(first, partition_id="2", starting_position="-1") as r:
        r.on_event_hook = checkpoint_at_e2
        await wait_for(lambda: r.count() == 5, what="five events")

    async with ContainerClient.from_connection_string(azurite, container) as blobs:
        names = [b.name async for b in blobs.list_blobs(include=["metadata"])]
        checkpoint = [n for n in names if n.endswith("/requests/$default/checkpoint/2")]
        assert checkpoint, names
        metadata = (await blobs.get_blob_client(checkpoint[0]).get_blob_properties()).metadata
    assert metadata["sequencenumber"] == "2"
    assert metadata["offset"] == str(stored[2].offset)

    async with producer(peer) as client:
        await client.send_event(EventData("e5"), partition_id="2")
    second = consumer(peer, checkpoint_store=checkpoint_store())
    async with Receiver(second, partition_id="2", starting_position="-1") as r2:
        await wait_for(lambda: r2.count() == 3, what="events after the checkpoint")
        await asyncio.sleep(0.2)
    assert bodies(r2.events["2"]) == ["e3", "e4", "e5"]


async def test_two_processors_split_partitions_then_one_takes_all(
    peer: EventHubsPeer, checkpoint_store: Callable[[], BlobCheckpointStore]
) -> None:
    def processor() -> EventHubConsumerClient:
        return consumer(
            peer,
            checkpoint_store=checkpoint_store(),
            load_balancing_interval=0.5,
            load_balancing_strategy="greedy",
        )

    async with Receiver(processor(), starting_position="-1") as a:
        await wait_for(lambda: len(a.owned) == 4, what="a owns all four")
        async with Receiver(processor(), starting_position="-1") as b:
            await wait_for(
                lambda: len(a.owned) == 2 and len(b.owned) == 2,
                timeout=20,
                what=f"an even split (a={a.owned}, b={b.owned})",
            )
            assert a.owned.isdisjoint(b.owned)
        await wait_for(lambda: len(a.owned) == 4, timeout=20, what="a takes all back")
        async with producer(peer) as client:  # no key, no partition: the peer round-robins
            for n in range(4):
                await client.send_event(EventData(f"event-{n}"))
        await wait_for(lambda: a.count() == 4, what="one event per partition")
        assert set(a.events) == {"0", "1", "2", "3"}


# -- standalone process ----------------------------------------------------------------------


async def test_standalone_process_serves_other_processes() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.eventhubs_peer",
        "--port",
        "0",
        "--hub",
        "requests:2",
        "--hub",
        "results:1",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        conn_str = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert conn_str.startswith("Endpoint=sb://127.0.0.1:")
        assert conn_str.endswith(";UseDevelopmentEmulator=true")
        hub_conn_str = conn_str + ";EntityPath=results"
        async with EventHubProducerClient.from_connection_string(hub_conn_str) as client:
            assert await client.get_partition_ids() == ["0"]
            await client.send_event(EventData("hello"))
        c = EventHubConsumerClient.from_connection_string(
            hub_conn_str, consumer_group="$Default", load_balancing_interval=0.2
        )
        async with Receiver(c, starting_position="-1") as r:
            await wait_for(lambda: r.count() == 1, what="event via the standalone peer")
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(proc.wait(), 10)
    assert returncode == 0
