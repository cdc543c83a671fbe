"""The executor's metrics and spans: sandbox runs by route and status, the sandbox's layers
(an info gauge: 1 in force, 0 missing, so a degraded host shows on the dashboard and
alerts), and heavy Jobs by state (pending, running) as this process last saw them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry.trace import Span
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from executor_worker.sandbox import SandboxJob, SandboxOutcome
from pipeline.observability import tracing

HEAVY_STATES = ("pending", "running")


class HeavyJobStates:
    """Heavy Jobs of this process by state. The Kubernetes runner's watch reports each
    Job it sees (:meth:`observe_job`); the inline runner counts its jobs as running.
    Thread-safe: the watch runs in a thread of its own."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}
        self._pending_since: dict[str, float] = {}
        self._clock = clock

    def set(self, name: str, state: str | None, since: float | None = None) -> None:
        with self._lock:
            if state is None:
                self._state.pop(name, None)
            else:
                self._state[name] = state
            if state == "pending":
                self._pending_since.setdefault(name, since or self._clock())
            else:
                self._pending_since.pop(name, None)

    def drop(self, names: Iterable[str]) -> None:
        """Forget these Jobs: a watch that stopped, or a list that no longer has them."""
        with self._lock:
            for name in names:
                self._state.pop(name, None)
                self._pending_since.pop(name, None)

    def oldest_pending_s(self) -> float:
        with self._lock:
            oldest = min(self._pending_since.values(), default=None)
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    def observe_job(self, kind: str, job: Mapping[str, Any]) -> bool:
        """From a Job object: not started or no ready pod -> pending; a ready pod ->
        running; finished or deleted -> gone. True while the Job is counted."""
        name = str((job.get("metadata") or {}).get("name", ""))
        status = job.get("status") or {}
        done = kind == "DELETED" or status.get("succeeded") or status.get("failed") or any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or [])
        if done:
            self.set(name, None)
        elif status.get("ready") or (status.get("active") and status.get("startTime")
                                     and "ready" not in status):
            self.set(name, "running")
        else:
            self.set(name, "pending", _created(job))
        return not done

    def names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._state)

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = list(self._state.values())
        return {s: states.count(s) for s in HEAVY_STATES}


def _created(job: Mapping[str, Any]) -> float | None:
    stamp = (job.get("metadata") or {}).get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


#: One per process, like the Jobs it mirrors (the watch and the handler both report).
HEAVY_JOBS = HeavyJobStates()


class _HeavyJobsCollector(Collector):
    def __init__(self, states: HeavyJobStates) -> None:
        self._states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("llmexec_heavy_jobs",
                                   "Heavy Jobs by state (pending, running), as this executor "
                                   "last saw them.", labels=["state"])
        for state, count in self._states.counts().items():
            family.add_metric([state], count)
        yield family
        yield GaugeMetricFamily("llmexec_heavy_job_oldest_pending_seconds",
                                "Age of the oldest heavy Job still pending (0 when none).",
                                value=self._states.oldest_pending_s())


class ExecutorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None,
                 heavy_jobs: HeavyJobStates = HEAVY_JOBS) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.runs = Counter("llmexec_sandbox_runs_total",
                            "Code runs by route (light, heavy) and status.",
                            ["route", "status"], registry=r)
        self.run_seconds = Histogram(
            "llmexec_sandbox_run_seconds", "Run time of one execution, by route.", ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=r)
        self.layers = _LayerGauge(r)
        r.register(_HeavyJobsCollector(heavy_jobs))

    def sandbox_layers(self, active: Iterable[str], missing: Mapping[str, str]) -> None:
        self.layers.set(active, missing)

    def ran(self, route: str, outcome: SandboxOutcome) -> None:
        self.runs.labels(route, outcome.status).inc()
        self.run_seconds.labels(route).observe(outcome.duration_ms / 1000)


class _LayerGauge(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._active: tuple[str, ...] = ()
        self._missing: dict[str, str] = {}
        registry.register(self)

    def set(self, active: Iterable[str], missing: Mapping[str, str]) -> None:
        self._active, self._missing = tuple(active), dict(missing)

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "llmexec_sandbox_layer",
            "Sandbox isolation layers: 1 in force, 0 missing on this host (see "
            "/api/v1/health for why).", labels=["layer"])
        for layer in self._active:
            family.add_metric([layer], 1)
        for layer in self._missing:
            if layer not in self._active:
                family.add_metric([layer], 0)
        yield family
        yield GaugeMetricFamily("llmexec_sandbox_degraded",
                                "1 when a sandbox layer is missing on this host.",
                                value=1 if set(self._missing) - set(self._active) else 0)


@contextmanager
def running(route: str, job: SandboxJob, layers: Iterable[str]) -> Iterator[Span]:
    name = "sandbox.run" if route == "light" else "heavy.submit"
    with tracing.span(name, route=route, job_id=job.job_id, timeout_s=job.timeout_s,
                      memory_mb=job.memory_mb, layers=list(layers)) as current:
        yield current


def ran(current: Span, outcome: SandboxOutcome | None) -> None:
    if outcome is None:
        tracing.set_attributes(current, detached=True)
        return
    tracing.set_attributes(current, status=outcome.status, exit_code=outcome.exit_code,
                           reason_code=outcome.reason_code, duration_ms=outcome.duration_ms,
                           layers=list(outcome.layers))


@contextmanager
def reporting(completion: Any) -> Iterator[Span]:
    """The reconciler publishing a finished heavy Job: a child of the submit's context when
    this process submitted it, else a trace of its own."""
    with tracing.span("heavy.report", parent=tracing.recall(completion.request_id,
                                                            completion.attempt),
                      request_id=completion.request_id, attempt=completion.attempt,
                      status=completion.outcome.status,
                      layers=list(completion.outcome.layers)) as current:
        yield current
