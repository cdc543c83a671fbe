"""Configuration: pydantic-settings groups read from the environment, built once in main.

Names follow the seed's ConfigMap and Secret keys (``LOG_LEVEL``, ``MAX_RETRIES``,
``EXECUTION_TIMEOUT``, ``HEAVY_JOB_*``, ``EVENT_HUB_CONNECTION_STRING``,
``STORAGE_CONNECTION_STRING``, ``LLM_API_KEY``). Bad values stop start-up through
:func:`load`, which turns a validation error into one :class:`ConfigError` line naming the
variable.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.bus.settings import BusSettings
from pipeline.errors import ConfigError

_BASE = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)


class LogSettings(BaseSettings):
    model_config = _BASE
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"


class ProcessorSettings(BaseSettings):
    model_config = _BASE
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 16
    checkpoint_every: Annotated[int, Field(ge=1)] = 100
    checkpoint_interval_s: Annotated[float, Field(gt=0)] = 5.0
    retry_backoff_s: Annotated[float, Field(ge=0)] = 0.5
    retry_backoff_max_s: Annotated[float, Field(ge=0)] = 30.0
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 25.0


class ExecutionSettings(BaseSettings):
    """Limits of each route. ``EXECUTION_TIMEOUT`` is the light route's wall timeout."""

    model_config = _BASE
    execution_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    execution_memory_mb: Annotated[int, Field(ge=32)] = 512
    max_output_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    heavy_job_timeout: Annotated[float, Field(gt=0)] = 3600.0
    heavy_job_memory_mb: Annotated[int, Field(ge=32)] = 8192
    heavy_job_cpu_request: str = "2"
    heavy_job_cpu_limit: str = "4"
    heavy_job_memory_request: str = "4Gi"
    heavy_job_memory_limit: str = "8Gi"
    heavy_job_image: str = "heavy-executor:latest"
    #: Empty: the executor's own namespace when it runs in a pod, else "default".
    heavy_job_namespace: str = ""
    #: Where heavy work runs: ``local`` (the heavy-executor entrypoint as a subprocess, the
    #: embedded default) or ``kubernetes`` (one Job per attempt, reported by a reconciler).
    heavy_runner: Literal["local", "kubernetes"] = "local"
    heavy_job_runtime_class: str | None = None
    #: The Job template; empty: the repository's job_templates/heavy-job.yaml.
    heavy_job_template: str = ""
    #: Added to the code's timeout for the Job's activeDeadlineSeconds: the entrypoint
    #: enforces the timeout itself; the deadline is the backstop and includes pod start.
    heavy_job_start_grace_s: Annotated[int, Field(ge=0, le=3600)] = 60
    #: A pod stuck unschedulable or failing to pull its image this long fails the request.
    heavy_job_pending_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    #: The reconciler's full re-list interval (the watch in between is restarted this often).
    heavy_job_resync_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


#: Third-party packages worth telling the model about when they are installed.
COMMON_PACKAGES = ("numpy", "pandas", "scipy", "sympy")


def _installed() -> tuple[str, ...]:
    return tuple(name for name in COMMON_PACKAGES if importlib.util.find_spec(name) is not None)


class LlmSettings(BaseSettings):
    """The LLM worker: the Anthropic API, and what the model is told about the sandbox.

    ``LIGHT_PACKAGES`` / ``HEAVY_PACKAGES`` are the importable top-level modules (beyond the
    standard library) installed in the light sandbox and the heavy-executor image; the
    prompt, the import check and routing all read them, so keep them equal to the images.
    The defaults are those of the usual scientific packages this interpreter can import
    (the embedded sandbox runs on it); set both explicitly in a deployment.
    """

    # By name too, so code and tests can pass ``llm_api_key=`` (the env names stay aliases).
    model_config = SettingsConfigDict(**_BASE, populate_by_name=True)
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LLM_API_KEY", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = None
    llm_model: str = "claude-sonnet-5-5"
    llm_max_tokens: Annotated[int, Field(ge=256, le=64_000)] = 4096
    llm_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    max_code_bytes: Annotated[int, Field(ge=16, le=512 * 1024)] = 128 * 1024
    #: LLM calls in flight per worker process, across all partitions.
    llm_max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    #: Longest ``retry-after`` we honour; a longer one would park a handler slot for ages.
    llm_max_retry_after_s: Annotated[float, Field(ge=0)] = 60.0
    light_packages: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=_installed)
    heavy_packages: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=_installed)
    sandbox_python_version: str = Field(
        default_factory=lambda: f"{sys.version_info.major}.{sys.version_info.minor}",
        pattern=r"^3\.[0-9]+$",
    )

    @field_validator("light_packages", "heavy_packages", mode="before")
    @classmethod
    def _split_packages(cls, value: object) -> object:
        """``numpy, scipy`` (comma-separated, as in a ConfigMap) -> a tuple of module names."""
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value


class ServiceSettings(BaseSettings):
    model_config = _BASE
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


@dataclass(frozen=True)
class AppConfig:
    """Every settings group, read once in main and passed down."""

    log: LogSettings
    bus: BusSettings
    processor: ProcessorSettings
    execution: ExecutionSettings
    llm: LlmSettings
    service: ServiceSettings

    @classmethod
    def build(
        cls,
        *,
        log: LogSettings | None = None,
        bus: BusSettings | None = None,
        processor: ProcessorSettings | None = None,
        execution: ExecutionSettings | None = None,
        llm: LlmSettings | None = None,
        service: ServiceSettings | None = None,
    ) -> AppConfig:
        """The groups given, and defaults for the rest (for tests and benchmarks)."""
        return cls(log=log or LogSettings(), bus=bus or BusSettings(),
                   processor=processor or ProcessorSettings(),
                   execution=execution or ExecutionSettings(), llm=llm or LlmSettings(),
                   service=service or ServiceSettings())


def load_config() -> AppConfig:
    return AppConfig(
        log=load(LogSettings),
        bus=load(BusSettings),
        processor=load(ProcessorSettings),
        execution=load(ExecutionSettings),
        llm=load(LlmSettings),
        service=load(ServiceSettings),
    )
