"""The one error tree of the platform. Adapters translate SDK errors into it.

    PipelineError
    ├── PermanentError          retrying cannot help: dead-letter (or fail the request) now
    │   ├── EventTooLargeError  an event over the hub's size limit
<<<<<<< HEAD
    │   └── ConfigError         bad configuration; start-up stops with one line naming it
    └── TransientError(delay)   may succeed later: retry in-process (pipeline.retries), bounded
                                by TRANSIENT_RETRIES, waiting at least ``delay`` seconds
=======
    │   ├── ConfigError         bad configuration; start-up stops with one line naming it
    │   └── PayloadMissingError a claim-check payload is not in its store (deleted, expired)
    └── TransientError(delay)   may succeed later: retry in-process (tenacity), bounded by
                                MAX_RETRIES, waiting at least ``delay`` seconds when given
>>>>>>> bus
        └── BusUnavailableError the bus or checkpoint store cannot be reached right now

Anything else a handler raises is a bug in our code; the processor treats it as permanent
(dead-letter with the traceback summary) so a bug never turns into an infinite retry loop.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class PermanentError(PipelineError):
    """Processing this input will never succeed."""


class EventTooLargeError(PermanentError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event of {size} bytes exceeds the {limit}-byte event size limit")
        self.size = size
        self.limit = limit


class ConfigError(PermanentError):
    """Configuration that cannot work. The message is one line that names the variable."""


class TransientError(PipelineError):
    """Processing may succeed later. ``delay`` (seconds) is a lower bound for the next try,
    e.g. from a ``retry-after`` header."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class BusUnavailableError(TransientError):
    """The message bus or checkpoint store is unreachable."""


class PayloadMissingError(PermanentError):
    """A claim-check payload store has nothing under the reference (retrying cannot help)."""
