"""The in-process retry policy: bounded, honours retry-after, never retries the permanent."""

from __future__ import annotations

import pytest

from pipeline.errors import PermanentError, TransientError
from pipeline.retries import RetryPolicy


async def test_transient_errors_are_retried_max_retries_times_then_reraised() -> None:
    tries: list[int] = []
    retried: list[int] = []

    async def always_flaky(n: int) -> None:
        tries.append(n)
        raise TransientError(f"flaky {n}")

    policy = RetryPolicy(max_retries=3, backoff_s=0.001, backoff_max_s=0.002)
    with pytest.raises(TransientError, match="flaky 4"):
        await policy.call(always_flaky, lambda n, exc: retried.append(n))
    assert tries == [1, 2, 3, 4]
    assert retried == [1, 2, 3]


async def test_success_after_a_transient_failure_returns_the_value() -> None:
    async def second_time_lucky(n: int) -> str:
        if n == 1:
            raise TransientError("once")
        return f"ok on {n}"

    policy = RetryPolicy(max_retries=2, backoff_s=0.001, backoff_max_s=0.002)
    assert await policy.call(second_time_lucky) == "ok on 2"


@pytest.mark.parametrize("max_retries", [0, 5])
async def test_permanent_errors_and_zero_retries_fail_at_once(max_retries: int) -> None:
    calls = 0

    async def doomed(n: int) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("no") if max_retries else TransientError("no")

    with pytest.raises((PermanentError, TransientError)):
        await RetryPolicy(max_retries, 0.001, 0.002).call(doomed)
    assert calls == 1


def test_delay_grows_is_capped_and_never_undercuts_retry_after() -> None:
    policy = RetryPolicy(max_retries=5, backoff_s=1.0, backoff_max_s=4.0)
    assert 1.0 <= policy.delay(1, None) <= 2.0
    assert 2.0 <= policy.delay(2, None) <= 3.0
    assert 4.0 <= policy.delay(10, None) <= 5.0
    assert policy.delay(1, TransientError("slow down", delay=30)) == 30
