"""Sandbox configuration (``SANDBOX_*``), read once in main and passed to the factory.

``SANDBOX_LEVEL`` names what the host must provide; a host that falls short stops the
worker at start with SandboxRefused naming the missing layer, unless the operator
explicitly accepts less with ``SANDBOX_ALLOW_DEGRADED=true``. Lists are comma-separated.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from executor_worker.sandbox.levels import KNOWN_LAYERS


def _default_work_dir() -> Path:
    # Per uid: a root worker and an unprivileged one on the same host must not share it.
    return Path(tempfile.gettempdir()) / f"llmexec-jobs-{os.getuid()}"


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SANDBOX_", extra="ignore", case_sensitive=False, frozen=True
    )

    kind: Literal["zygote", "subprocess"] = "zygote"
    level: Literal["strict", "standard", "minimal"] = "standard"
    allow_degraded: bool = False
    concurrency: Annotated[int, Field(ge=1, le=256)] = 2
    #: Children kept forked ahead of jobs (0: one per concurrent job). Where each slot has
    #: a PID namespace of its own (root hosts) it is one per free slot instead.
    prefork: Annotated[int, Field(ge=0, le=256)] = 0
    work_dir: Path = Field(default_factory=_default_work_dir)
    #: Modules imported once in the zygote, e.g. "numpy,pandas"; missing ones are skipped.
    preimport: str = ""
    #: First uid of the per-slot job uids (slot k runs as uid_base + k) when the worker is
    #: root; no passwd entries are needed. Empty: jobs keep the worker's uid.
    uid_base: Annotated[int, Field(ge=1000, le=2**31 - 1)] | None = 60000
    #: Allow the job to execve other programs (off: Python code only).
    allow_exec: bool = False
    #: Layers never to use, e.g. "netns,seccomp": for hosts where one misbehaves, and to
    #: test the refusal path.
    disable_layers: str = ""
    #: Extra read-only paths for Landlock (data sets, model files), comma-separated.
    read_paths: str = ""
    #: Per-job process budget (RLIMIT_NPROC, counted per job where the host allows).
    nproc: Annotated[int, Field(ge=1, le=4096)] = 64
    nofile: Annotated[int, Field(ge=16, le=65536)] = 64
    #: CPU a job may use, in cores' worth per period (cgroup ``cpu.max``, where the host
    #: delegates a cgroup v2 subtree; elsewhere only RLIMIT_CPU bounds CPU time).
    cpu_quota: Annotated[float, Field(ge=0.01, le=256)] = 1.0
    #: Size of each private tmpfs (/tmp, /var/tmp, /dev/shm) a job gets in its mount namespace.
    tmp_mb: Annotated[int, Field(ge=1, le=4096)] = 64
    #: A job printing more than this many times its output cap is killed (output_limit).
    output_kill_factor: Annotated[int, Field(ge=1, le=1024)] = 64
    #: Seconds to wait for the zygote's hello (probing, pre-imports) at start.
    start_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    #: Record per-job timing spans (supervisor and zygote) for bench/sandbox.py --trace.
    trace: bool = False

    @field_validator("preimport", "disable_layers", "read_paths", mode="before")
    @classmethod
    def _join_lists(cls, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            return ",".join(str(v) for v in value)
        return value

    @field_validator("disable_layers")
    @classmethod
    def _known_layers(cls, value: str) -> str:
        unknown = set(_split(value)) - KNOWN_LAYERS
        if unknown:
            raise ValueError(f"unknown layer(s): {', '.join(sorted(unknown))}")
        return value

    @property
    def preimport_modules(self) -> tuple[str, ...]:
        return _split(self.preimport)

    @property
    def disabled_layers(self) -> frozenset[str]:
        return frozenset(_split(self.disable_layers))

    @property
    def extra_read_paths(self) -> tuple[str, ...]:
        return _split(self.read_paths)

    @property
    def prefork_count(self) -> int:
        return self.prefork or self.concurrency


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
