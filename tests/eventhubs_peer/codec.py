"""AMQP 1.0 encoding for the peer, borrowed from the SDK's private ``_pyamqp`` package.

Every import of ``azure.eventhub._pyamqp`` lives in this module so that an SDK upgrade
that moves things breaks one file. We use the SDK's own encoder on purpose: it writes
every field of a performative (trailing nulls included), and the SDK's decoder indexes
fixed positions (``frame[4]``, ``frame[11]``), so a server that omits trailing nulls
(qpid-proton does) crashes the client.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

from azure.eventhub._buffered_producer._partition_resolver import generate_hash_code
from azure.eventhub._pyamqp import performatives as perf
from azure.eventhub._pyamqp._decode import _DECODE_BY_CONSTRUCTOR, decode_frame, decode_payload
from azure.eventhub._pyamqp._encode import encode_frame, encode_payload, encode_value
from azure.eventhub._pyamqp.endpoints import Source, Target
from azure.eventhub._pyamqp.error import AMQPError
from azure.eventhub._pyamqp.message import Message, Properties
from azure.eventhub._pyamqp.outcomes import Accepted, Rejected
from azure.eventhub._pyamqp.types import TYPE, VALUE, AMQPTypes

__all__ = [
    "AMQP_HEADER",
    "BATCH_FORMAT",
    "EMPTY_FRAME",
    "SASL_HEADER",
    "AMQPError",
    "Accepted",
    "Code",
    "Rejected",
    "Source",
    "Target",
    "annotated_payload",
    "decode_body",
    "decode_frame",
    "encode_frame",
    "partition_hash",
    "perf",
    "reply_message",
    "split_batch",
    "typed",
]

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
EMPTY_FRAME = b"\x00\x00\x00\x08\x02\x00\x00\x00"
BATCH_FORMAT = 0x80013700

_MESSAGE_ANNOTATIONS = 0x72
_DATA = 0x75


class Code:
    """Descriptor codes of the performatives (decode_frame returns these)."""

    OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
    SASL_INIT = 0x41


def encode(frame: NamedTuple | None, channel: int = 0, *, sasl: bool = False) -> bytes:
    """One wire frame: 8-byte header (size, doff=2, type, channel) plus the body."""
    header, body = encode_frame(frame, frame_type=b"\x01" if sasl else b"\x00")
    if body is None:
        return EMPTY_FRAME
    return header + struct.pack(">H", channel) + bytes(body)


def typed(amqp_type: str, value: Any) -> dict[str, Any]:
    """A value with an explicit AMQP type, e.g. ``typed("timestamp", ms)``."""
    return {TYPE: getattr(AMQPTypes, amqp_type), VALUE: value}


def decode_body(payload: bytes | memoryview) -> Message:
    return decode_payload(memoryview(payload))


def _sections(raw: bytes) -> list[tuple[int, bytes]]:
    """Split an encoded message into (descriptor code, raw section bytes), unchanged."""
    view = memoryview(raw)
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(view):
        if view[pos] != 0x00:
            raise ValueError(f"message section at byte {pos} is not a described type")
        rest, code = _DECODE_BY_CONSTRUCTOR[view[pos + 1]](view[pos + 2 :])
        rest, _ = _DECODE_BY_CONSTRUCTOR[rest[0]](rest[1:])
        end = len(view) - len(rest)
        out.append((int(code), bytes(view[pos:end])))
        pos = end
    return out


def split_batch(payload: bytes, message_format: int) -> list[bytes]:
    """The encoded events of one delivery: a batch carries one inner message per data section."""
    if message_format != BATCH_FORMAT:
        return [payload]
    return [bytes(item) for item in (decode_body(payload).data or [])]


def partition_key_of(raw_event: bytes) -> str | None:
    for code, section in _sections(raw_event):
        if code == _MESSAGE_ANNOTATIONS:
            annotations = decode_body(section).message_annotations or {}
            key = annotations.get(b"x-opt-partition-key")
            if isinstance(key, bytes):
                return key.decode("utf-8")
            return None if key is None else str(key)
    return None


def annotated_payload(raw_event: bytes, annotations: dict[bytes, dict[str, Any]]) -> bytes:
    """The event as a consumer sees it: the sender's bytes with the broker's annotations merged.

    Every section but message-annotations is copied byte for byte, so application properties
    and body types survive exactly as the producer encoded them.
    """
    before: list[bytes] = []
    after: list[bytes] = []
    merged: dict[Any, Any] = {}
    for code, section in _sections(raw_event):
        if code == _MESSAGE_ANNOTATIONS:
            merged.update(decode_body(section).message_annotations or {})
        elif code < _MESSAGE_ANNOTATIONS:
            before.append(section)
        else:
            after.append(section)
    merged.update(annotations)
    encoded = bytearray()
    encode_value(
        encoded,
        {
            TYPE: AMQPTypes.described,
            VALUE: (
                typed("ulong", _MESSAGE_ANNOTATIONS),
                {TYPE: AMQPTypes.map, VALUE: [(typed("symbol", k), v) for k, v in merged.items()]},
            ),
        },
    )
    return b"".join([*before, bytes(encoded), *after])


def delivery_annotations(values: dict[bytes, dict[str, Any]]) -> bytes:
    out = bytearray()
    encode_value(
        out,
        {
            TYPE: AMQPTypes.described,
            VALUE: (
                typed("ulong", 0x71),
                {TYPE: AMQPTypes.map, VALUE: [(typed("symbol", k), v) for k, v in values.items()]},
            ),
        },
    )
    return bytes(out)


def reply_message(correlation_id: Any, status: int, description: str, value: Any = None) -> bytes:
    """A $cbs/$management response: matched by correlation-id, status in app properties."""
    message = Message(
        properties=Properties(correlation_id=correlation_id),
        application_properties={
            "status-code": typed("int", status),
            "status-description": typed("string", description),
            # azure-eventhub 5.15's $management client reads this spelling instead.
            "statusDescription": typed("string", description),
        },
        value=value,
    )
    return bytes(encode_payload(bytearray(), message))


def fields_to_source(fields: Iterable[Any] | None) -> Source | None:
    if fields is None:
        return None
    values = list(fields)[: len(Source._fields)]
    values += [None] * (len(Source._fields) - len(values))
    source = Source(*values)
    if source.filters:
        # The decoder drops filter descriptors; put them back (descriptor = filter name).
        filters = {k: (k, typed("string", v)) for k, v in source.filters.items() if v is not None}
        source = source._replace(filters=filters)
    return source


def fields_to_target(fields: Iterable[Any] | None) -> Target | None:
    if fields is None:
        return None
    values = list(fields)[: len(Target._fields)]
    values += [None] * (len(Target._fields) - len(values))
    return Target(*values)


def partition_hash(key: str) -> int:
    """The service's partition-key hash (Jenkins lookup3, as the SDK's buffered producer)."""
    return int(generate_hash_code(key))  # type: ignore[no-untyped-call]


def new_container_id() -> str:
    return f"eventhubs-peer-{uuid.uuid4()}"
