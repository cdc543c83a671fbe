"""The LLM worker's settings: the Anthropic API, the repair budget, and what the model is
told about the sandbox. Read once in main (``llmexec.config``) and passed down."""

from __future__ import annotations

import sys
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.settings import BASE_CONFIG


class LlmSettings(BaseSettings):
    """``MAX_RETRIES`` is the seed's "maximum validation/execution retry attempts": how many
    attempts (generated programs) one request gets before its final result says why it
    failed. Each validation failure or run-time failure of generated code spends one.

    ``LIGHT_PACKAGES`` / ``HEAVY_PACKAGES`` are the importable top-level modules (beyond the
    standard library) installed in the light sandbox and the heavy-executor image; the
    prompt, the import check and routing all read them, so keep them equal to the images.
    Unset, they are detected once at start from the environment the worker runs in (the
    embedded sandbox runs the same interpreter; see :mod:`llm_worker.packages`); set both
    explicitly in a deployment.
    """

    # By name too, so code and tests can pass ``llm_api_key=`` (the env names stay aliases).
    model_config = SettingsConfigDict(**BASE_CONFIG, populate_by_name=True)
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
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
    light_packages: Annotated[tuple[str, ...] | None, NoDecode] = None
    heavy_packages: Annotated[tuple[str, ...] | None, NoDecode] = None
    sandbox_python_version: str = Field(
        default_factory=lambda: f"{sys.version_info.major}.{sys.version_info.minor}",
        pattern=r"^3\.[0-9]+$",
    )

    @property
    def max_attempts(self) -> int:
        """Generated programs one request may use (at least the first)."""
        return max(1, self.max_retries)

    @field_validator("light_packages", "heavy_packages", mode="before")
    @classmethod
    def _split_packages(cls, value: object) -> object:
        """``numpy, scipy`` (comma-separated, as in a ConfigMap) -> a tuple of module names."""
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value
