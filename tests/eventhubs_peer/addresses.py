"""What a link address names: $cbs, $management, a hub, a partition, a consumer group partition."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    kind: str  # "cbs" | "management" | "hub" | "consumer"
    hub: str = ""
    partition: str | None = None
    consumer_group: str = ""


def entity_path(address: str) -> str:
    """``amqps://host:port/a/b`` -> ``a/b``; bare paths pass through."""
    if "://" in address:
        rest = address.split("://", 1)[1]
        address = rest.split("/", 1)[1] if "/" in rest else ""
    return address.strip("/")


def parse(address: str | bytes | None) -> Address:
    if isinstance(address, bytes):
        address = address.decode("utf-8")
    path = entity_path(address or "")
    if path.lower() == "$cbs":
        return Address("cbs")
    if path.lower() == "$management" or path.lower().endswith("/$management"):
        return Address("management")
    parts = path.split("/")
    lowered = [p.lower() for p in parts]
    if len(parts) == 1 and parts[0]:
        return Address("hub", hub=parts[0])
    if len(parts) == 3 and lowered[1] == "partitions":
        return Address("hub", hub=parts[0], partition=parts[2])
    if len(parts) == 5 and lowered[1] == "consumergroups" and lowered[3] == "partitions":
        return Address("consumer", hub=parts[0], consumer_group=parts[2], partition=parts[4])
    raise ValueError(f"unsupported address {address!r}")
