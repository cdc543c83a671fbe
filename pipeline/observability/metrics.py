"""Prometheus metrics of the processor, on a registry owned by the service (not global)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class PartitionMetrics:
    """The label children one partition's run updates, resolved once (``labels()`` is a
    locked dict lookup per call otherwise)."""

    in_flight: Any
    checkpoint_lag: Any
    checkpoints: Any
    stuck_seconds: Any


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "llmexec_events_processed_total",
            "Events handled, by outcome (ok, deadlettered, unfinished).",
            ["worker", "hub", "outcome"], registry=r,
        )
        self.handler_seconds = Histogram(
            "llmexec_handler_seconds", "Handler latency per event.", ["worker", "hub"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.in_flight = Gauge(
            "llmexec_events_in_flight", "Events being handled now.", ["worker"], registry=r
        )
        self.retries = Counter(
            "llmexec_handler_retries_total", "In-process retries after a transient error.",
            ["worker", "hub"], registry=r,
        )
        self.deadletters = Counter(
            "llmexec_deadletters_total", "Events sent to the dead-letter hub, by cause.",
            ["worker", "hub", "cause"], registry=r,
        )
        self.checkpoint_lag = Gauge(
            "llmexec_checkpoint_lag_events",
            "Events received but not yet covered by a checkpoint.",
            ["worker", "hub", "partition"], registry=r,
        )
        self.checkpoints = Counter(
            "llmexec_checkpoints_total", "Checkpoint writes.", ["worker", "hub"], registry=r
        )
        self.unpublished_bytes = Gauge(
            "llmexec_unpublished_bytes", "Outputs kept for re-publishing.", ["worker"],
            registry=r,
        )
        self.published = Counter(
            "llmexec_events_published_total", "Events published, by hub.", ["worker", "hub"],
            registry=r,
        )

        self.results = Counter(
            "llmexec_results_total",
            "Results published to the results hub, by status (succeeded, failed, timed_out, "
            "rejected, ...) and the worker that published them.",
            ["worker", "status"], registry=r,
        )

        # Declared here for the dashboard and alerts; the partition run sets it (a partition
        # with work in flight whose checkpoint has not moved for this long).
        self.partition_stuck = Gauge(
            "llmexec_partition_stuck_seconds",
            "Age of the oldest thing holding a partition's checkpoint back (its oldest "
            "unfinished event, or a failing checkpoint store); 0 when nothing is.",
            ["worker", "hub", "partition"], registry=r,
        )

    def count_outputs(self, worker: str, emits: Sequence[Any]) -> None:
        """Count the results among published outputs, by status."""
        for emit in emits:
            if str(getattr(emit.event, "kind", "")) == "result":
                status = getattr(emit.event, "status", None)
                self.results.labels(worker, str(getattr(status, "value", status))).inc()

    def for_partition(self, worker: str, hub: str, partition: str) -> PartitionMetrics:
        return PartitionMetrics(
            in_flight=self.in_flight.labels(worker),
            checkpoint_lag=self.checkpoint_lag.labels(worker, hub, partition),
            checkpoints=self.checkpoints.labels(worker, hub),
            stuck_seconds=self.partition_stuck.labels(worker, hub, partition),
        )
