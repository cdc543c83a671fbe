"""Resources as async context managers, so one ``AsyncExitStack`` composes them.

Every long-lived resource of the platform (bus, sandbox, job runner, LLM client) has an
``async close()``; those that must be prepared first also have ``async start()``.
:func:`started` and :func:`closing` turn either kind into an async context manager that
closes it however the block ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar


class Closeable(Protocol):
    async def close(self) -> None: ...


class Startable(Closeable, Protocol):
    async def start(self) -> None: ...


C = TypeVar("C", bound=Closeable)
S = TypeVar("S", bound=Startable)


@asynccontextmanager
async def closing(resource: C) -> AsyncIterator[C]:
    try:
        yield resource
    finally:
        await resource.close()


@asynccontextmanager
async def started(resource: S) -> AsyncIterator[S]:
    """``await resource.start()``; closed on exit, and also when start() itself fails
    half-way (a zygote that started but failed its level check must not be left behind)."""
    try:
        await resource.start()
        yield resource
    finally:
        await resource.close()
