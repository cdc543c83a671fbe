"""Configuration: pydantic-settings groups read from the environment, built once in main.

These are the groups every service shares (logging, bus, processor, service, and the
limits of each route, which the LLM worker routes by and the executor enforces); each
worker keeps its own group beside the code that reads it (``llm_worker.settings``,
``executor_worker.sandbox.settings``), and the application (``llmexec.config``) builds
them all once in main. Names follow the seed's ConfigMap and Secret keys. Bad values stop
start-up through :func:`load`, which turns a validation error into one
:class:`ConfigError` line naming the variable.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

#: The model config every settings group of the platform uses.
BASE_CONFIG = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)


class LogSettings(BaseSettings):
    model_config = BASE_CONFIG
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"


class ProcessorSettings(BaseSettings):
    """The consume loop. ``TRANSIENT_RETRIES`` is how often one event's handler (or one
    publish) is retried in-process after a transient error before the event is
    dead-lettered; it is not ``MAX_RETRIES``, which bounds the LLM worker's repair attempts."""

    model_config = BASE_CONFIG
    transient_retries: Annotated[int, Field(ge=0, le=100)] = 3
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 16
    checkpoint_every: Annotated[int, Field(ge=1)] = 100
    checkpoint_interval_s: Annotated[float, Field(gt=0)] = 5.0
    retry_backoff_s: Annotated[float, Field(ge=0)] = 0.5
    retry_backoff_max_s: Annotated[float, Field(ge=0)] = 30.0
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 25.0
    #: A partition whose oldest unfinished event (or failing checkpoint) is older than
    #: this is reported stuck: /api/v1/ready fails with the reason.
    stuck_after_s: Annotated[float, Field(gt=0)] = 300.0
    #: Outputs kept for re-publishing, across the processor's partitions, above which
    #: intake pauses (bytes).
    unpublished_max_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    #: One checkpoint write may take this long before it counts as failed (a store that
    #: hangs must not hang the partition's flusher).
    checkpoint_timeout_s: Annotated[float, Field(gt=0)] = 10.0


class ExecutionSettings(BaseSettings):
    """Limits of each route, which the LLM worker routes by and the executor enforces.
    ``EXECUTION_TIMEOUT`` is the light route's wall timeout. Where and how heavy work runs
    is the executor's own (``executor_worker.settings.ExecutorSettings``)."""

    model_config = BASE_CONFIG
    execution_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    execution_memory_mb: Annotated[int, Field(ge=32)] = 512
    max_output_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    heavy_job_timeout: Annotated[float, Field(gt=0)] = 3600.0
    heavy_job_memory_mb: Annotated[int, Field(ge=32)] = 8192


class ServiceSettings(BaseSettings):
    model_config = BASE_CONFIG
    consumer_group: str | None = None
    metrics_port: Annotated[int | None, Field(ge=0, le=65535)] = None


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Build a settings group from the environment; one-line ConfigError when it is wrong."""
    try:
        return cls()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else cls.__name__
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        raise ConfigError(f"invalid configuration: {name}: {err['msg']}{shown}") from None
