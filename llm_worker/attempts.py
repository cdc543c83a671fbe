"""Attempt bookkeeping: the record of a run-time failure, and the progress of one request
inside this process.

Across processes the attempt number and history travel in the events (ExecutionCommand,
RepairRequest), so a restart resumes the repair loop where it was. Inside a process,
:class:`Progress` keeps what one handler call already paid for, so a tenacity retry after a
throttled API call (or a redelivered duplicate) does not generate the same attempts again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.handling import Emit
from schemas import AttemptRecord, ErrorInfo, ExecutionCommand, ExecutionResult

#: How much of a failed run's output travels back to the model (and in later events).
OUTPUT_TAIL_CHARS = 4_000


def runtime_failure_record(cmd: ExecutionCommand, failure: ExecutionResult) -> AttemptRecord:
    """The failed attempt as the model needs to see it: its code, the error, and the tails
    of stderr (the traceback) and stdout, which the executor's own record does not carry."""
    base = next((a for a in reversed(failure.attempts) if a.attempt == cmd.attempt), None)
    error = failure.error or ErrorInfo(code="failed", message=failure.status.value)
    details = {**error.details, "exit_code": failure.exit_code,
               "stderr": _tail(failure.stderr), "stdout": _tail(failure.stdout)}
    return AttemptRecord(
        attempt=cmd.attempt, code=cmd.code, source=cmd.source,
        validation=base.validation if base else cmd.validation,
        status=failure.status, usage=base.usage if base else cmd.usage,
        error=error.model_copy(update={"details": details}),
    )


def _tail(text: str) -> str:
    return text if len(text) <= OUTPUT_TAIL_CHARS else "..." + text[-OUTPUT_TAIL_CHARS:]


@dataclass
class Progress:
    """One handler call's state: the attempt being written, the attempts so far, and, once
    finished, the outputs (returned again to a duplicate of the same event)."""

    attempt: int
    history: list[AttemptRecord]
    outputs: Sequence[Emit] | None = None
    notes: dict[str, bool] = field(default_factory=dict)


class ProgressCache:
    """A small LRU of :class:`Progress`, keyed by the event it belongs to."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[object, ...], Progress] = OrderedDict()

    def get_or_start(self, key: tuple[object, ...], attempt: int,
                     history: list[AttemptRecord]) -> Progress:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        progress = Progress(attempt=attempt, history=list(history))
        self._items[key] = progress
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return progress

    def __len__(self) -> int:
        return len(self._items)
