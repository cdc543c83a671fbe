"""The code-generation port. The Anthropic adapter implements it; tests bring their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import JsonValue

from schemas import AttemptRecord, ExecRoute, LlmUsage


@dataclass(frozen=True)
class Generation:
    code: str
    route_hint: ExecRoute = ExecRoute.LIGHT
    route_reason: str = ""
    usage: LlmUsage | None = None


class CodeGenerator(Protocol):
    async def generate(
        self, prompt: str, *, inputs: JsonValue, history: list[AttemptRecord]
    ) -> Generation:
        """Write code for ``prompt``; ``history`` holds earlier failed attempts to repair.
        Raises TransientError (retry later) or PermanentError (give up with a reason)."""
        ...

    async def close(self) -> None: ...
