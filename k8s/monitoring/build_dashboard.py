"""Writes dashboards/llm-executor.json: the Grafana dashboard, from the panel list below
(kept as code so panels stay uniform; ``python k8s/monitoring/build_dashboard.py``).
bench/render_dashboard.py plots the same PANELS from a local run's /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

R = "$__rate_interval"


def q(quantile: float, metric: str, by: str) -> str:
    return (f"histogram_quantile({quantile}, sum by (le, {by}) "
            f"(rate({metric}_bucket[{R}])))")

#: (title, unit, [(PromQL, legend)], kind)
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("Throughput per stage (events/s)", "ops", [
        (f"sum by (worker, hub, outcome) (rate(llmexec_events_processed_total[{R}]))",
         "{{worker}} {{hub}} {{outcome}}")], "timeseries"),
    ("Handler latency per stage (p50, p95)", "s", [
        (q(0.5, "llmexec_handler_seconds", "worker"),
         "{{worker}} p50"),
        (q(0.95, "llmexec_handler_seconds", "worker"),
         "{{worker}} p95")], "timeseries"),
    ("Results by status (/s)", "ops", [
        (f"sum by (status) (rate(llmexec_results_total[{R}]))", "{{status}}")], "timeseries"),
    ("Dead letters by cause (/s)", "ops", [
        (f"sum by (hub, cause) (rate(llmexec_deadletters_total[{R}]))", "{{hub}} {{cause}}")],
     "timeseries"),
    ("Checkpoint lag per partition (events)", "short", [
        ("max by (worker, hub, partition) (llmexec_checkpoint_lag_events)",
         "{{worker}} {{hub}}/{{partition}}")], "timeseries"),
    ("Stuck partitions (seconds without progress)", "s", [
        ("max by (worker, hub, partition) (llmexec_partition_stuck_seconds)",
         "{{worker}} {{hub}}/{{partition}}")], "timeseries"),
    ("Events in flight", "short", [
        ("sum by (worker) (llmexec_events_in_flight)", "{{worker}}"),
        ("sum (llmexec_llm_calls_in_flight)", "LLM calls")], "timeseries"),
    ("Sandbox layers in force (1) / missing (0)", "short", [
        ("min by (layer) (llmexec_sandbox_layer)", "{{layer}}")], "bargauge"),
    ("Executors with a degraded sandbox", "short", [
        ("sum (llmexec_sandbox_degraded)", "degraded")], "stat"),
    ("Sandbox runs by route and status (/s)", "ops", [
        (f"sum by (route, status) (rate(llmexec_sandbox_runs_total[{R}]))",
         "{{route}} {{status}}")], "timeseries"),
    ("Sandbox run time (p95)", "s", [
        (q(0.95, "llmexec_sandbox_run_seconds", "route"),
         "{{route}} p95")], "timeseries"),
    ("LLM calls by outcome (/s)", "ops", [
        (f"sum by (outcome) (rate(llmexec_llm_generations_total[{R}]))", "{{outcome}}")],
     "timeseries"),
    ("LLM API errors by class (/s)", "ops", [
        (f"sum by (error_class) (rate(llmexec_llm_api_errors_total[{R}]))", "{{error_class}}")],
     "timeseries"),
    ("LLM tokens by kind (/s)", "short", [
        (f"sum by (kind) (rate(llmexec_llm_tokens_total[{R}]))", "{{kind}}")], "timeseries"),
    ("LLM latency (p95)", "s", [
        (q(0.95, "llmexec_llm_request_seconds", "model"),
         "{{model}} p95")], "timeseries"),
    ("Heavy Jobs by state", "short", [
        ("sum by (state) (llmexec_heavy_jobs)", "{{state}}"),
        ("max (llmexec_heavy_job_oldest_pending_seconds)", "oldest pending (s)")],
     "timeseries"),
]


def panel(i: int, title: str, unit: str, targets: list[tuple[str, str]],
          kind: str) -> dict[str, Any]:
    return {
        "id": i + 1, "type": kind, "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for j, (expr, legend) in enumerate(targets)],
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "llm-executor", "title": "llm-executor", "tags": ["llm-executor"],
        "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "utc",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("dashboards") / "llm-executor.json"
    out.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
    print(out)
