"""The loopback Event Hubs peer: an asyncio AMQP server plus a thread-hosted facade for tests.

``PeerServer`` lives on the event loop that starts it (the CLI uses it directly).
``EventHubsPeer`` runs a ``PeerServer`` on a private loop in a daemon thread, so a test that
blocks its own loop (sync SDK clients, ``time.sleep``) cannot stall the peer, and one peer can
serve several OS processes at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .broker import Broker, StoredEvent
from .codec import new_container_id
from .connection import AmqpConnection
from .faults import PeerFaults

T = TypeVar("T")

ONE_MB = 1024 * 1024

#: The token types a $cbs put-token may carry, as the service knows them: a shared-access
#: signature (connection strings) or an Entra ID access token (a token credential).
SAS_TOKEN_TYPE = "servicebus.windows.net:sastoken"
JWT_TOKEN_TYPE = "jwt"


@dataclass(frozen=True)
class PutToken:
    """One $cbs put-token the peer received."""

    token_type: str
    audience: str
    token: str
    status: int


def connection_string(host: str, port: int, hub: str | None = None) -> str:
    value = (
        f"Endpoint=sb://{host}:{port}/;SharedAccessKeyName=k;SharedAccessKey=v;"
        "UseDevelopmentEmulator=true"
    )
    return value + (f";EntityPath={hub}" if hub else "")


class PeerServer:
    def __init__(
        self,
        hubs: Mapping[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_size: int = ONE_MB,
        advertised_max_message_size: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        jwt_tokens: Collection[str] | None = None,
    ) -> None:
        self.broker = Broker(dict(hubs))
        self.host = host
        self.port = port
        #: Serve amqps (TLS) instead of plain AMQP: what a token credential connects to.
        self.ssl_context = ssl_context
        #: Entra ID tokens the peer accepts (None: any); SAS tokens are never checked.
        self.jwt_tokens = None if jwt_tokens is None else frozenset(jwt_tokens)
        self.put_tokens: list[PutToken] = []
        self.max_message_size = max_message_size
        # What attach advertises; the SDK sizes batches by it. Set it above max_message_size
        # to make the SDK send oversized messages so the peer's own rejection is exercised.
        self.advertised_max_message_size = advertised_max_message_size or max_message_size
        self.container_id = new_container_id()
        self.connections: set[AmqpConnection] = set()
        self.faults = PeerFaults()  # chaos switches (faults.py)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = AmqpConnection(self, reader, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if task is not None:
                self._tasks.discard(task)

    def put_token(self, props: Mapping[str, Any], body: Any) -> tuple[int, str]:
        """Answer a $cbs put-token like the service: 200 for a known token type (and, for a
        JWT, a token we were told to accept), 401 for a refused token, 400 otherwise."""

        def text(value: Any) -> str:
            return value.decode("utf-8") if isinstance(value, bytes) else str(value or "")

        token_type, audience, token = text(props.get("type")), text(props.get("name")), text(body)
        if text(props.get("operation")) != "put-token":
            status, description = 400, "unsupported $cbs operation"
        elif token_type == SAS_TOKEN_TYPE:
            status, description = 200, "OK"
        elif token_type == JWT_TOKEN_TYPE:
            accepted = self.jwt_tokens is None or token in self.jwt_tokens
            status, description = (200, "OK") if accepted else (401, "InvalidIssuer: token refused")
        else:
            status, description = 400, f"unsupported token type {token_type!r}"
        self.put_tokens.append(PutToken(token_type, audience, token, status))
        return status, description

    def drop_connections(self) -> int:
        dropped = list(self.connections)
        for connection in dropped:
            connection.abort()
        return len(dropped)

    def force_detach(
        self,
        condition: str = "amqp:link:detach-forced",
        *,
        producers: bool = True,
        consumers: bool = True,
    ) -> int:
        """Fault injection: detach producer and/or consumer links with an error, keep sockets."""
        kinds = {"hub"} if producers else set()
        kinds |= {"consumer"} if consumers else set()
        count = 0
        for connection in list(self.connections):
            for session in list(connection.sessions.values()):
                for link in list(session.links.values()):
                    if link.address.kind in kinds and not link.detached:
                        link.detach(condition.encode(), "detached by the test peer")
                        count += 1
        return count

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)


class EventHubsPeer:
    """Thread-hosted peer. ``await peer.start()`` / ``peer.start_sync()``, then use
    ``peer.connection_string`` (namespace level) with the real SDK."""

    def __init__(self, hubs: Mapping[str, int], **options: Any) -> None:
        self._server = PeerServer(hubs, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start_sync(self) -> None:
        if self._thread is not None:
            raise RuntimeError("peer already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), daemon=True, name="eventhubs-peer"
        )
        self._thread.start()
        ready.result(timeout=10)

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._server.start())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop_sync(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._run(self._server.stop()).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> EventHubsPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> EventHubsPeer:
        self.start_sync()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_sync()

    # -- address ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def connection_string(self) -> str:
        return self._server.connection_string

    def hub_connection_string(self, hub: str) -> str:
        return connection_string(self.host, self.port, hub)

    # -- fault injection and inspection ----------------------------------------------------

    async def drop_connections(self) -> int:
        """Abort every client socket (no AMQP close); returns how many were dropped."""
        return await asyncio.wrap_future(self._call(self._server.drop_connections))

    async def force_detach(
        self,
        condition: str = "amqp:link:detach-forced",
        *,
        producers: bool = True,
        consumers: bool = True,
    ) -> int:
        """Detach links with ``condition`` (sockets stay up); returns how many.

        Note: with azure-eventhub 5.15.1 the next send on a force-detached producer link
        sometimes fails with EventDataSendError (UnknownError) instead of being retried
        (seen in 2 of 5 suite runs): callers must treat that as transient.
        """
        return await asyncio.wrap_future(
            self._call(
                lambda: self._server.force_detach(
                    condition, producers=producers, consumers=consumers
                )
            )
        )

    @property
    def faults(self) -> PeerFaults:
        """Freeze / refuse-sends switches (thread-safe flags; see faults.py)."""
        return self._server.faults

    def put_tokens(self) -> list[PutToken]:
        """Every $cbs put-token so far (type, audience, token, the status answered)."""
        return self._call(lambda: list(self._server.put_tokens)).result(timeout=10)

    def connection_count(self) -> int:
        return self._call(lambda: len(self._server.connections)).result(timeout=10)

    def events(self, hub: str, partition_id: str) -> list[StoredEvent]:
        return self._call(
            lambda: list(self._server.broker.partition(hub, partition_id).events)
        ).result(timeout=10)

    def partition_for_key(self, hub: str, key: str) -> str:
        return self._server.broker.hub(hub).route(key).id

    def _call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        async def call() -> T:
            return fn()

        return self._run(call())

    def _run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._loop is None:
            coro.close()
            raise RuntimeError("peer is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)
