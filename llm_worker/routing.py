"""Light unless the request asks otherwise or the work does not fit the light limits."""

from __future__ import annotations

from pipeline.settings import ExecutionSettings
from schemas import ExecRoute, ExecutionRequest, Route


def resolve_route(
    req: ExecutionRequest, hint: object, execution: ExecutionSettings
) -> tuple[ExecRoute, str]:
    if req.route is Route.LIGHT:
        return ExecRoute.LIGHT, "requested light"
    if req.route is Route.HEAVY:
        return ExecRoute.HEAVY, "requested heavy"
    timeout, memory = req.limits.timeout_s, req.limits.memory_mb
    if timeout is not None and timeout > execution.execution_timeout:
        return ExecRoute.HEAVY, f"timeout {timeout:g}s exceeds the light limit"
    if memory is not None and memory > execution.execution_memory_mb:
        return ExecRoute.HEAVY, f"memory {memory} MiB exceeds the light limit"
    if hint == ExecRoute.HEAVY:
        return ExecRoute.HEAVY, "the model estimated heavy work"
    return ExecRoute.LIGHT, "fits the light limits"
