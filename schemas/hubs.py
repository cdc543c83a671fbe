"""Hub names: the four hubs of the platform and their defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubNames:
    requests: str = "requests"
    executions: str = "executions"
    results: str = "results"
    deadletter: str = "deadletter"

    def all(self) -> tuple[str, str, str, str]:
        return (self.requests, self.executions, self.results, self.deadletter)
