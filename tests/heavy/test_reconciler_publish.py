"""The reconciler never drops a finished Job's result: it re-publishes with capped backoff
until the bus takes it, and acknowledges the Job only after that."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from executor_worker.heavy.reconciler import Reconciler
from executor_worker.heavy.runner import JobCompletion
from executor_worker.sandbox import SandboxOutcome
from pipeline.bus.ports import OutgoingEvent
from pipeline.errors import BusUnavailableError
from schemas import ExecutionResult, decode_event
from tests.heavy.conftest import HUBS, command

OK = SandboxOutcome(status="succeeded", exit_code=0, stdout="42\n", stderr="",
                    duration_ms=1.0, layers=("process",))


class DownThenUp:
    """A results hub that refuses the first ``failures`` sends, as an outage would."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries = 0
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise BusUnavailableError("results hub unreachable")
        self.published.extend((hub, e.body) for e in events)

    async def close(self) -> None: ...


class OneJob:
    """A detached runner holding one finished Job; records the acknowledgement."""

    def __init__(self, completion: JobCompletion, publisher: DownThenUp) -> None:
        self._completion = completion
        self._publisher = publisher
        self.reported_after_tries: int | None = None

    async def completions(self) -> AsyncIterator[JobCompletion]:
        yield self._completion

    async def mark_reported(self, completion: JobCompletion) -> None:
        assert completion is self._completion
        self.reported_after_tries = self._publisher.tries


async def test_a_result_is_published_once_the_bus_returns_and_only_then_acknowledged() -> None:
    cmd = command("heavy-1")
    completion = JobCompletion(request_id="heavy-1", attempt=1, command=cmd, outcome=OK)
    publisher = DownThenUp(failures=5)
    runner = OneJob(completion, publisher)
    reconciler = Reconciler(runner, publisher, HUBS,  # type: ignore[arg-type]
                            retry_delay_s=0.001, max_retry_delay_s=0.004)
    await reconciler.run()

    assert publisher.tries == 6  # more failures than any bounded default would retry
    ((hub, body),) = publisher.published
    result = decode_event(body)
    assert hub == HUBS.results and isinstance(result, ExecutionResult)
    assert result.request_id == "heavy-1" and result.stdout == "42\n"
    assert runner.reported_after_tries == 6  # acknowledged after the publish, not before
