"""The one error tree of the platform. Adapters translate SDK errors into it.

    PipelineError
    ├── PermanentError          retrying cannot help: dead-letter (or fail the request) now
    │   ├── EventTooLargeError  an event over the hub's size limit
    │   ├── ConfigError         bad configuration; start-up stops with one line naming it
    │   │   └── SandboxRefused  (executor_worker.sandbox) the host falls short of SANDBOX_LEVEL
    │   ├── PayloadMissingError a claim-check payload is not in its store (deleted, expired)
    │   └── LlmPermanentError   (llm_worker) the API refused the request (key, model, size)
    └── TransientError(delay)   may succeed later: retry in-process (pipeline.retries), bounded
        │                       by TRANSIENT_RETRIES, waiting at least ``delay`` seconds
        ├── BusUnavailableError the bus or checkpoint store cannot be reached right now
        ├── SandboxUnavailable  (executor_worker.sandbox) the zygote died; a new one starts
        └── LlmTransientError   (llm_worker) throttled, overloaded, timed out, malformed answer

Adapters map their SDK's errors into this tree in one table beside the adapter
(``pipeline.bus.eventhubs.errors``, ``llm_worker.anthropic_client``,
``executor_worker.heavy.kube``). Anything else a handler raises is a bug in our code; the
processor treats it as permanent (dead-letter with the traceback summary) so a bug never
turns into an infinite retry loop.
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
