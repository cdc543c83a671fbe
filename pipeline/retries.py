"""In-process retries of transient errors: tenacity, behind a fast path. The one retry
primitive of the platform (the processor, the claim check and the heavy-job reconciler
all use it).

``TransientError`` is retried at most ``max_retries`` times (``None``: until it succeeds,
for work that must not be dropped, such as reporting a finished Job) with exponential
backoff capped at ``backoff_max_s`` and jitter, never sooner than the error's own
``delay`` (a ``retry-after``); anything else propagates at once. The first try runs
without building a retry controller, because almost every call succeeds first time and
this sits on the per-event hot path.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
)

from pipeline.errors import TransientError

T = TypeVar("T")
OnRetry = Callable[[int, BaseException], None]


class RetryPolicy:
    def __init__(self, max_retries: int | None, backoff_s: float, backoff_max_s: float) -> None:
        self.max_retries = max_retries
        self._base = backoff_s
        self._cap = backoff_max_s

    @property
    def tries(self) -> float:
        """How many times :meth:`call` runs ``fn`` at most (the first try included)."""
        return float("inf") if self.max_retries is None else self.max_retries + 1

    def delay(self, tries: int, exc: BaseException | None) -> float:
        """Seconds to wait after the ``tries``-th failed try."""
        floor = (exc.delay or 0.0) if isinstance(exc, TransientError) else 0.0
        backoff: float = min(self._cap, self._base * 2 ** min(tries - 1, 62))
        return max(floor, backoff + random.uniform(0, self._base))

    async def call(self, fn: Callable[[int], Awaitable[T]], on_retry: OnRetry | None = None) -> T:
        """``await fn(try_number)`` until it succeeds or the retries are spent (the last
        TransientError is re-raised)."""
        try:
            return await fn(1)
        except TransientError as exc:
            if self.max_retries == 0:
                raise
            if on_retry is not None:
                on_retry(1, exc)
            await asyncio.sleep(self.delay(1, exc))

        def wait(state: RetryCallState) -> float:
            return self.delay(state.attempt_number + 1, _error(state))

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None:
                on_retry(state.attempt_number + 1, _error(state) or TransientError("?"))

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_never if self.max_retries is None else stop_after_attempt(self.max_retries),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return await fn(attempt.retry_state.attempt_number + 1)
        raise AssertionError("unreachable: tenacity re-raises the last error")


def _error(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None
