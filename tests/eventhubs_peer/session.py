"""One AMQP session: link attach/detach, flow, transfers, and $cbs / $management requests."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import addresses, codec
from .links import InboundLink, Link, OutboundLink, PartitionReceiver, ReplyLink

if TYPE_CHECKING:
    from .connection import AmqpConnection

log = logging.getLogger(__name__)

WINDOW = 2**31 - 1  # session windows large enough never to bind in a test
SELECTOR = b"apache.org:selector-filter:string"
NOT_FOUND = b"amqp:not-found"


class Session:
    def __init__(self, connection: AmqpConnection, channel: int, begin: list[Any]) -> None:
        self.connection = connection
        self.channel = channel  # we answer on the channel the client chose
        self.next_incoming_id: int = begin[1]  # next transfer-id the client will use
        self.next_outgoing_id = 0
        self.links: dict[int, Link] = {}  # by the client's handle
        self._next_handle = 0

    def send(self, frame: Any) -> None:
        self.connection.send(frame, self.channel)

    def begin_reply(self) -> Any:
        return codec.perf.BeginFrame(
            remote_channel=self.channel,
            next_outgoing_id=self.next_outgoing_id,
            incoming_window=WINDOW,
            outgoing_window=WINDOW,
            handle_max=65535,
            offered_capabilities=None,
            desired_capabilities=None,
            properties=None,
        )

    def send_flow(self, link: Link, delivery_count: int, credit: int) -> None:
        self.send(
            codec.perf.FlowFrame(
                next_incoming_id=self.next_incoming_id,
                incoming_window=WINDOW,
                next_outgoing_id=self.next_outgoing_id,
                outgoing_window=WINDOW,
                handle=link.handle,
                delivery_count=delivery_count,
                link_credit=credit,
                available=None,
                drain=False,
                echo=False,
                properties=None,
            )
        )

    async def send_transfer(self, link: OutboundLink, payload: bytes) -> None:
        """One settled delivery, split into frames that fit the client's max-frame-size."""
        delivery_id = self.next_outgoing_id
        self.next_outgoing_id += 1
        first: dict[str, Any] = {
            "handle": link.handle,
            "delivery_id": delivery_id,
            "delivery_tag": delivery_id.to_bytes(4, "big"),
            "message_format": 0,
            "settled": True,
            "rcv_settle_mode": None,
            "state": None,
            "resume": None,
            "aborted": None,
            "batchable": None,
        }
        empty = codec.encode(
            codec.perf.TransferFrame(more=True, payload=b"", **first), self.channel
        )
        room = max(self.connection.remote_max_frame_size - len(empty), 256)
        chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
        rest = {**first, "delivery_id": None, "delivery_tag": None, "message_format": None}
        frames = [
            codec.encode(
                codec.perf.TransferFrame(
                    more=index < len(chunks) - 1, payload=chunk, **(first if index == 0 else rest)
                ),
                self.channel,
            )
            for index, chunk in enumerate(chunks)
        ]
        await self.connection.write(b"".join(frames))

    # -- frames from the client -------------------------------------------------------------

    def on_attach(self, fields: list[Any]) -> None:
        handle = self._next_handle
        self._next_handle += 1
        client_receives = bool(fields[2])
        address = addresses.parse(fields[5][0] if client_receives else fields[6][0])
        source = codec.fields_to_source(fields[5])
        target = codec.fields_to_target(fields[6])
        refusal: tuple[bytes, str] | None = None
        link: Link
        if not client_receives:
            link = InboundLink(self, fields, handle, address)
            if address.kind == "hub":
                refusal = self._check_entity(address)
        elif address.kind in ("cbs", "management"):
            link = ReplyLink(self, fields, handle, address)
        else:
            refusal = self._check_entity(address)
            filters = (fields[5][7] if len(fields[5]) > 7 else None) or {}
            selector = filters.get(SELECTOR)
            if isinstance(selector, bytes):
                selector = selector.decode("utf-8")
            if refusal is None:
                partition = self.connection.peer.broker.partition(
                    address.hub, address.partition or ""
                )
                link = PartitionReceiver(self, fields, handle, address, partition, selector)
            else:
                link = ReplyLink(self, fields, handle, address)  # placeholder, detached below
        self.links[link.remote_handle] = link
        self.send(
            codec.perf.AttachFrame(
                name=fields[0],
                handle=handle,
                role=not client_receives,
                send_settle_mode=fields[3],
                rcv_settle_mode=fields[4],
                source=source,
                target=target,
                unsettled=None,
                incomplete_unsettled=False,
                initial_delivery_count=0,
                max_message_size=self.connection.peer.advertised_max_message_size,
                offered_capabilities=fields[12] if client_receives else None,
                desired_capabilities=None,
                properties=fields[13] if client_receives else None,
            )
        )
        if refusal is None and isinstance(link, PartitionReceiver):
            a = link.address
            refused = self.connection.peer.broker.claim(
                a.hub, a.consumer_group, a.partition or "", link
            )
            if refused:
                refusal = (b"amqp:link:stolen", refused)
        if refusal is not None:
            link.detach(*refusal)
        elif isinstance(link, InboundLink):
            link.grant_credit()

    def _check_entity(self, address: addresses.Address) -> tuple[bytes, str] | None:
        broker = self.connection.peer.broker
        try:
            if address.partition is not None:
                broker.partition(address.hub, address.partition)
            else:
                broker.hub(address.hub)
        except LookupError as exc:
            return NOT_FOUND, str(exc)
        return None

    def on_flow(self, fields: list[Any]) -> None:
        link = self.links.get(fields[4]) if fields[4] is not None else None
        if isinstance(link, OutboundLink):
            link.on_flow(fields)

    def on_transfer(self, fields: list[Any]) -> None:
        self.next_incoming_id += 1
        link = self.links.get(fields[0])
        if isinstance(link, InboundLink) and not link.detached:
            link.on_transfer(fields)

    def on_detach(self, fields: list[Any]) -> None:
        link = self.links.pop(fields[0], None)
        if link is None:
            return
        if not link.detached:
            link.detach()
        link.closed()

    def close_all(self) -> None:
        for link in self.links.values():
            link.closed()
        self.links.clear()

    # -- $cbs and $management -----------------------------------------------------------

    def handle_request(self, link: InboundLink, payload: bytes) -> None:
        message = codec.decode_body(payload)
        props = {
            (k.decode() if isinstance(k, bytes) else k): v
            for k, v in (message.application_properties or {}).items()
        }
        message_id = message.properties.message_id if message.properties else None
        if link.address.kind == "cbs":
            status, description = self.connection.peer.put_token(props, message.value)
            reply = codec.reply_message(message_id, status, description)
        else:
            reply = self._management(props, message_id)
        for other in self.links.values():
            if isinstance(other, ReplyLink) and other.address.kind == link.address.kind:
                other.reply(reply)
                return
        log.warning("no reply link for %s request", link.address.kind)

    def _management(self, props: dict[str, Any], message_id: Any) -> bytes:
        def text(name: str) -> str:
            value = props.get(name)
            return value.decode("utf-8") if isinstance(value, bytes) else str(value or "")

        broker = self.connection.peer.broker
        kind = text("type")
        try:
            if text("operation") != "READ":
                return codec.reply_message(
                    message_id, 400, f"unsupported operation {text('operation')}"
                )
            if kind == "com.microsoft:eventhub":
                body = broker.hub(text("name")).properties()
            elif kind == "com.microsoft:partition":
                body = broker.partition(text("name"), text("partition")).properties()
            else:
                return codec.reply_message(message_id, 400, f"unsupported type {kind}")
        except LookupError as exc:
            return codec.reply_message(message_id, 404, str(exc))
        return codec.reply_message(message_id, 200, "OK", body)
