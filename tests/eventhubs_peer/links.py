"""Link endpoints of the peer.

``InboundLink``: the client sends (producer, $cbs / $management requests).
``OutboundLink``: the client receives (consumer on a partition, $cbs / $management replies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import codec
from .addresses import Address
from .broker import Owner, Partition

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

INBOUND_CREDIT = 1000
EPOCH = b"com.microsoft:epoch"
RUNTIME_METRIC = b"com.microsoft:enable-receiver-runtime-metric"
SIZE_EXCEEDED = b"amqp:link:message-size-exceeded"
STOLEN = b"amqp:link:stolen"


class Link:
    def __init__(self, session: Session, attach: list[Any], handle: int, address: Address) -> None:
        self.session = session
        self.name: bytes = attach[0]
        self.remote_handle: int = attach[1]
        self.handle = handle
        self.address = address
        self.detached = False  # we sent a detach

    def detach(self, condition: bytes | None = None, description: str | None = None) -> None:
        if self.detached:
            return
        self.detached = True
        error = codec.AMQPError(condition, description, None) if condition else None
        self.session.send(codec.perf.DetachFrame(handle=self.handle, closed=True, error=error))
        self.closed()

    def closed(self) -> None:
        """The link is gone (detached by either side, or the connection dropped)."""


class InboundLink(Link):
    def __init__(self, session: Session, attach: list[Any], handle: int, address: Address) -> None:
        super().__init__(session, attach, handle, address)
        self.delivery_count: int = attach[9] or 0
        self.credit = 0
        self._partial = bytearray()
        self._first: list[Any] | None = None

    def grant_credit(self) -> None:
        self.credit = INBOUND_CREDIT
        self.session.send_flow(self, self.delivery_count, self.credit)

    def on_transfer(self, fields: list[Any]) -> None:
        if self._first is None:
            self._first = fields
        payload = fields[11]
        if fields[5]:  # more: the delivery continues in the next frame
            self._partial += payload
            return
        if self._partial:
            self._partial += payload
            payload, self._partial = bytes(self._partial), bytearray()
        else:
            payload = bytes(payload)
        first, self._first = self._first, None
        self.delivery_count += 1
        self.credit -= 1
        outcome = self._deliver(payload, first[3] or 0)
        if not first[4]:  # unsettled: the client waits for our outcome
            self.session.send(
                codec.perf.DispositionFrame(
                    role=True,
                    first=first[1],
                    last=first[1],
                    settled=True,
                    state=outcome,
                    batchable=None,
                )
            )
        if self.credit < INBOUND_CREDIT // 2 and not self.detached:
            self.grant_credit()

    def _deliver(self, payload: bytes, message_format: int) -> Any:
        peer = self.session.connection.peer
        if len(payload) > peer.max_message_size:
            return codec.Rejected(
                error=codec.AMQPError(
                    SIZE_EXCEEDED,
                    f"The received message (size: {len(payload)} bytes) exceeds the limit "
                    f"({peer.max_message_size} bytes) currently allowed on the link.",
                    None,
                )
            )
        refused = peer.faults.refusal(self.address.kind)
        if refused is not None:
            return refused
        try:
            if self.address.kind in ("cbs", "management"):
                self.session.handle_request(self, payload)
            else:
                self._store(payload, message_format)
        except Exception as exc:
            log.exception("delivery on %s failed", self.address)
            return codec.Rejected(error=codec.AMQPError(b"amqp:internal-error", str(exc), None))
        return codec.Accepted()

    def _store(self, payload: bytes, message_format: int) -> None:
        broker = self.session.connection.peer.broker
        events = codec.split_batch(payload, message_format)
        key = codec.partition_key_of(payload if message_format == codec.BATCH_FORMAT else events[0])
        if self.address.partition is not None:
            partition = broker.partition(self.address.hub, self.address.partition)
        else:
            partition = broker.hub(self.address.hub).route(key)
        for raw in events:
            partition.append(raw, key)


class OutboundLink(Link):
    def __init__(self, session: Session, attach: list[Any], handle: int, address: Address) -> None:
        super().__init__(session, attach, handle, address)
        self.delivery_count = 0
        self.credit = 0
        self.drain = False
        self._pump: asyncio.Task[None] | None = None

    def on_flow(self, fields: list[Any]) -> None:
        delivery_count = fields[5] if fields[5] is not None else self.delivery_count
        if fields[6] is not None:
            self.credit = delivery_count + fields[6] - self.delivery_count
        self.drain = bool(fields[8])
        if fields[9] and not self.drain:  # echo
            self.session.send_flow(self, self.delivery_count, self.credit)
        self.wake()

    def wake(self) -> None:
        if self.detached or self.credit <= 0:
            return
        if not self.has_next():
            self._finish_drain()
        elif self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.detached and self.credit > 0 and self.has_next():
            await self.session.connection.peer.faults.while_frozen()
            if self.detached:
                break
            self.credit -= 1
            self.delivery_count += 1
            await self.session.send_transfer(self, self.next_payload())
        self._finish_drain()

    def _finish_drain(self) -> None:
        """Drain: nothing more to send, so use up the credit and tell the receiver."""
        if self.drain and self.credit > 0 and not self.detached:
            self.delivery_count += self.credit
            self.credit = 0
            self.drain = False
            self.session.send_flow(self, self.delivery_count, 0)

    def has_next(self) -> bool:
        raise NotImplementedError

    def next_payload(self) -> bytes:
        raise NotImplementedError

    def closed(self) -> None:
        self.detached = True


class ReplyLink(OutboundLink):
    """Source $cbs or $management: carries responses to requests made on the paired link."""

    def __init__(self, session: Session, attach: list[Any], handle: int, address: Address) -> None:
        super().__init__(session, attach, handle, address)
        self.queue: deque[bytes] = deque()

    def reply(self, payload: bytes) -> None:
        self.queue.append(payload)
        self.wake()

    def has_next(self) -> bool:
        return bool(self.queue)

    def next_payload(self) -> bytes:
        return self.queue.popleft()


class PartitionReceiver(OutboundLink, Owner):
    """A consumer on one partition of one consumer group, from a selector-filter position."""

    def __init__(
        self,
        session: Session,
        attach: list[Any],
        handle: int,
        address: Address,
        partition: Partition,
        selector: str | None,
    ) -> None:
        super().__init__(session, attach, handle, address)
        self.partition = partition
        self.position = partition.start_index(selector)
        properties = attach[13] or {}
        epoch = properties.get(EPOCH)
        self.epoch = int(epoch) if epoch is not None else None
        self.runtime_metric = RUNTIME_METRIC in (attach[12] or [])
        self._unsubscribe = partition.subscribe(self.wake)

    def has_next(self) -> bool:
        return self.position < len(self.partition.events)

    def next_payload(self) -> bytes:
        event = self.partition.events[self.position]
        self.position += 1
        if not self.runtime_metric:
            return event.payload
        last = self.partition.events[-1]
        return event.payload + codec.delivery_annotations(
            {
                b"last_enqueued_sequence_number": codec.typed("long", last.sequence_number),
                b"last_enqueued_offset": codec.typed("string", str(last.offset)),
                b"last_enqueued_time_utc": codec.typed("timestamp", last.enqueued_time_ms),
                b"runtime_info_retrieval_time_utc": codec.typed(
                    "timestamp", time.time_ns() // 1_000_000
                ),
            }
        )

    def steal(self, description: str) -> None:
        self.detach(STOLEN, description)

    def closed(self) -> None:
        super().closed()
        self._unsubscribe()
        a = self.address
        self.session.connection.peer.broker.release(
            a.hub, a.consumer_group, a.partition or "", self
        )
