"""Shared fixtures. Test settings are built directly (never from the environment)."""

from __future__ import annotations

import os

import pytest

from executor_worker.settings import ExecutorSettings
from llmexec.config import AppConfig
from pipeline.settings import ProcessorSettings

# Settings classes read the environment; keep a developer's own keys out of the tests.
for _var in ("LLM_API_KEY", "ANTHROPIC_API_KEY", "EVENT_HUB_CONNECTION_STRING",
             "STORAGE_CONNECTION_STRING", "MAX_RETRIES", "LOG_LEVEL"):
    os.environ.pop(_var, None)


def make_config(**processor: object) -> AppConfig:
    proc = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05, "checkpoint_interval_s": 0.2,
            "shutdown_grace_s": 5.0, **processor}
    return AppConfig.build(
        processor=ProcessorSettings(**proc),  # type: ignore[arg-type]
        execution=ExecutorSettings(execution_timeout=10),
    )


@pytest.fixture
def config() -> AppConfig:
    return make_config()
