"""Every settings group, read once in main and passed down.

Each group lives beside the code that reads it: the shared ones in
:mod:`pipeline.settings`, the LLM worker's in :mod:`llm_worker.settings`, the sandbox's
in :mod:`executor_worker.sandbox.settings`. Only this module knows them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from executor_worker.sandbox import SandboxSettings
from executor_worker.settings import ExecutorSettings
from llm_worker.settings import LlmSettings
from pipeline.bus.settings import BusSettings
from pipeline.settings import (
    LogSettings,
    ProcessorSettings,
    ServiceSettings,
    load,
)


@dataclass(frozen=True)
class AppConfig:
    log: LogSettings
    bus: BusSettings
    processor: ProcessorSettings
    execution: ExecutorSettings
    llm: LlmSettings
    service: ServiceSettings
    sandbox: SandboxSettings

    @classmethod
    def build(
        cls,
        *,
        log: LogSettings | None = None,
        bus: BusSettings | None = None,
        processor: ProcessorSettings | None = None,
        execution: ExecutorSettings | None = None,
        llm: LlmSettings | None = None,
        service: ServiceSettings | None = None,
        sandbox: SandboxSettings | None = None,
    ) -> AppConfig:
        """The groups given, and defaults for the rest (for tests and benchmarks)."""
        return cls(log=log or LogSettings(), bus=bus or BusSettings(),
                   processor=processor or ProcessorSettings(),
                   execution=execution or ExecutorSettings(), llm=llm or LlmSettings(),
                   service=service or ServiceSettings(), sandbox=sandbox or SandboxSettings())

    def replace(self, **groups: object) -> AppConfig:
        return dataclasses.replace(self, **groups)  # type: ignore[arg-type]


def load_config() -> AppConfig:
    """From the environment; a bad value raises ConfigError with one line naming it."""
    return AppConfig(
        log=load(LogSettings),
        bus=load(BusSettings),
        processor=load(ProcessorSettings),
        execution=load(ExecutorSettings),
        llm=load(LlmSettings),
        service=load(ServiceSettings),
        sandbox=load(SandboxSettings),
    )
