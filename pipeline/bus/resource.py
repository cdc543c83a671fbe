"""Every bus resource closes once and is an async context manager (``async with``)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """``async with resource:`` closes it on the way out; ``close()`` stays for callers that
    manage the lifetime themselves (an ``AsyncExitStack`` takes either)."""

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
