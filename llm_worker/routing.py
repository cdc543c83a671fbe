"""Where code runs: light unless the request asks otherwise, the work does not fit the light
limits (the request's own limits or the model's estimate), or the code needs modules that
only the heavy image has.

The model's ``route`` hint is recorded but the numbers decide: a model that calls a
two-second job "heavy" should not cost a Kubernetes Job, and one that says "light" for an
hour of work should not be killed at the light timeout.
"""

from __future__ import annotations

from llm_worker.generator import Submission
from pipeline.settings import ExecutionSettings
from schemas import ExecRoute, Limits, Route


def resolve_route(
    *,
    requested: Route,
    limits: Limits,
    execution: ExecutionSettings,
    heavy_only_packages: frozenset[str] = frozenset(),
    estimate: Submission | None = None,
) -> tuple[ExecRoute, str]:
    if requested is Route.LIGHT:
        return ExecRoute.LIGHT, "requested light"
    if requested is Route.HEAVY:
        return ExecRoute.HEAVY, "requested heavy"
    light_s, light_mb = execution.execution_timeout, execution.execution_memory_mb
    if limits.timeout_s is not None and limits.timeout_s > light_s:
        return ExecRoute.HEAVY, (f"requested timeout {limits.timeout_s:g}s exceeds the light "
                                 f"limit of {light_s:g}s")
    if limits.memory_mb is not None and limits.memory_mb > light_mb:
        return ExecRoute.HEAVY, (f"requested memory {limits.memory_mb} MiB exceeds the light "
                                 f"limit of {light_mb} MiB")
    if heavy_only_packages:
        return ExecRoute.HEAVY, (f"needs {', '.join(sorted(heavy_only_packages))}, only in "
                                 "the heavy image")
    if estimate is not None:
        why = f" ({estimate.route_reason})" if estimate.route_reason else ""
        if estimate.expected_runtime_s > light_s:
            return ExecRoute.HEAVY, (f"model estimates {estimate.expected_runtime_s:g}s, over "
                                     f"the light limit of {light_s:g}s{why}")
        if estimate.expected_memory_mb > light_mb:
            return ExecRoute.HEAVY, (f"model estimates {estimate.expected_memory_mb:g} MiB, "
                                     f"over the light limit of {light_mb} MiB{why}")
        if estimate.route == "heavy":
            return ExecRoute.LIGHT, ("fits the light limits (the model suggested heavy: "
                                     f"{estimate.route_reason or 'no reason given'})")
    return ExecRoute.LIGHT, "fits the light limits"
