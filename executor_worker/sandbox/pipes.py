"""Read a job's output pipe from the event loop into a capped buffer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from executor_worker.sandbox.output import CappedBuffer

_CHUNK = 65536
#: Chunks read per wake-up, so one chatty job cannot starve the loop.
_BURST = 16


class PipeReader:
    """Drains ``fd`` (the supervisor's read end) until EOF; ``done`` resolves at EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, buffer: CappedBuffer,
                 on_data: Callable[[], None]) -> None:
        self._loop = loop
        self._fd = fd
        self._buffer = buffer
        self._on_data = on_data
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        for _ in range(_BURST):
            try:
                chunk = os.read(self._fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            self._buffer.feed(chunk)
            self._on_data()

    def drain_now(self) -> None:
        """Take what the pipe holds now (without waiting for EOF), then stop reading."""
        while self._fd >= 0:
            try:
                chunk = os.read(self._fd, _CHUNK)
            except OSError:  # BlockingIOError: empty for now
                break
            if not chunk:
                break
            self._buffer.feed(chunk)
            self._on_data()
        self.close()

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        if not self.done.done():
            self.done.set_result(None)
