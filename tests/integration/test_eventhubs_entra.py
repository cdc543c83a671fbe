"""Entra ID auth end to end: the real SDKs' credential path with a token credential of our
own (the boundary where Entra ID would hand out tokens), against the loopback peer over
amqps (CBS put-token of type ``jwt``, as Event Hubs takes it) and Azurite over HTTPS with
``--oauth basic`` (bearer tokens; Azurite refuses them over plain HTTP)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import TransportType

from pipeline.bus.claimcheck import ClaimCheckBus
from pipeline.bus.eventhubs import BlobPayloadStore, EventHubsBus
from pipeline.bus.ports import OutgoingEvent
from pipeline.bus.settings import BusSettings
from pipeline.errors import PermanentError
from pipeline.handling import Emit, EventContext
from pipeline.processor import Processor
from pipeline.settings import ProcessorSettings
from schemas import Event, ExecutionRequest
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import account_url, azurite_or_skip
from tests.eventhubs_peer.tls import TlsFiles, loopback_certificate
from tests.eventhubs_peer.tokens import (
    EVENTHUBS_SCOPE,
    STORAGE_SCOPE,
    FixedTokenCredential,
    unsigned_jwt,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

NAMESPACE = "llmexec-test.servicebus.windows.net"
EH_TOKEN = unsigned_jwt("https://eventhubs.azure.net")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return loopback_certificate(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="module")
def storage_url(tls: TlsFiles) -> Iterator[str]:
    with azurite_or_skip(tls=tls) as conn_str:
        yield account_url(conn_str)


@pytest.fixture
async def peer(tls: TlsFiles) -> AsyncIterator[EventHubsPeer]:
    async with EventHubsPeer(hubs={"in": 2}, ssl_context=tls.server_context(),
                             jwt_tokens=[EH_TOKEN]) as running:
        yield running
    gc.collect()


def credential(storage_token: str | None = None) -> FixedTokenCredential:
    return FixedTokenCredential({
        EVENTHUBS_SCOPE: EH_TOKEN,
        STORAGE_SCOPE: storage_token or unsigned_jwt("https://storage.azure.com"),
    })


def entra_bus(peer: EventHubsPeer, storage_url: str, tls: TlsFiles,
              cred: FixedTokenCredential, **options: Any) -> EventHubsBus:
    """What production runs (EVENT_HUB_NAMESPACE + STORAGE_ACCOUNT_URL), with the network
    routed to loopback the way the SDK allows for gateways (custom endpoint, CA bundle)."""
    settings = BusSettings(event_hub_namespace=NAMESPACE, storage_account_url=storage_url,
                           checkpoint_container=f"cp-{uuid.uuid4().hex[:10]}")
    return EventHubsBus(
        settings, credential=cred,
        eventhub_options={"transport_type": TransportType.Amqp,
                          "custom_endpoint_address": f"sb://127.0.0.1:{peer.port}",
                          "connection_verify": str(tls.ca)},
        storage_options={"connection_verify": str(tls.ca)},
        **options,
    )


def request(i: int) -> OutgoingEvent:
    return OutgoingEvent(ExecutionRequest(request_id=f"r{i}", code="print(1)").to_json_bytes(),
                         partition_key=f"r{i}")


async def test_processor_runs_on_entra_id_tokens(peer: EventHubsPeer, storage_url: str,
                                                 tls: TlsFiles) -> None:
    cred = credential()
    bus = entra_bus(peer, storage_url, tls, cred, load_balancing_interval_s=0.3, greedy=True)
    handled: set[str] = set()

    async def handler(event: Event, ctx: EventContext) -> Sequence[Emit]:
        handled.add(event.request_id)
        return []

    proc = Processor(name="t", bus=bus, hub="in", consumer_group="g", handler=handler,
                     accepts=frozenset({"request"}), deadletter_hub="in",
                     settings=ProcessorSettings(checkpoint_every=1, checkpoint_interval_s=0.1))
    async with bus:
        task = asyncio.create_task(proc.run())
        await bus.publisher().publish("in", [request(i) for i in range(6)])
        for _ in range(400):
            if len(handled) == 6:
                break
            await asyncio.sleep(0.05)
        await proc.stop(2)
        await task
        checkpoints = await bus.list_checkpoints("in", "g")
    assert handled == {f"r{i}" for i in range(6)}
    # Checkpoints and ownership were written to blob storage with bearer tokens.
    assert checkpoints and all(c.sequence_number >= 0 for c in checkpoints)
    tokens = peer.put_tokens()
    assert tokens and {t.token_type for t in tokens} == {"jwt"}
    # The SDK's audiences: the hub for sending, the consumer group for receiving.
    assert {t.audience for t in tokens} == {f"sb://{NAMESPACE}/in",
                                            f"sb://{NAMESPACE}/in/consumergroups/g"}
    assert {t.status for t in tokens} == {200} and {t.token for t in tokens} == {EH_TOKEN}
    asked = {scope for scopes in cred.scopes_requested for scope in scopes}
    assert asked == {EVENTHUBS_SCOPE, STORAGE_SCOPE}


async def test_claim_check_payloads_travel_with_bearer_tokens(
    peer: EventHubsPeer, storage_url: str, tls: TlsFiles
) -> None:
    bus = entra_bus(peer, storage_url, tls, credential())
    big = b"x" * (2 * 1024 * 1024)
    async with ClaimCheckBus(bus, BlobPayloadStore(bus.clients, "claims")) as claims:
        await claims.publisher().publish("in", [OutgoingEvent(big, "k")])
        assert sum(len(peer.events("in", pid)) for pid in ("0", "1")) == 1
        # Content-addressed under the hub: the blob the envelope points to, read back.
        ref = f"blob://claims/in/{hashlib.sha256(big).hexdigest()}"
        assert await claims.store.get(ref) == big


async def test_a_refused_event_hubs_token_is_permanent(tls: TlsFiles, storage_url: str) -> None:
    async with EventHubsPeer(hubs={"in": 2}, ssl_context=tls.server_context(),
                             jwt_tokens=["some-other-token"]) as peer:
        bus = entra_bus(peer, storage_url, tls, credential())
        async with bus:
            with pytest.raises(PermanentError, match="refused our credentials"):
                await bus.publisher().publish("in", [request(0)])
        assert {t.status for t in peer.put_tokens()} == {401}


async def test_a_storage_token_for_another_audience_is_permanent(
    peer: EventHubsPeer, storage_url: str, tls: TlsFiles
) -> None:
    cred = credential(storage_token=unsigned_jwt("https://vault.azure.net"))
    async with entra_bus(peer, storage_url, tls, cred) as bus:
        with pytest.raises(PermanentError, match="Blob storage refused our credentials"):
            await bus.list_checkpoints("in", "g")
