"""Prometheus metrics of the LLM worker, on the service's registry (as PipelineMetrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas import LlmUsage, ValidationReport


class LlmMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tokens = Counter(
            "llmexec_llm_tokens_total",
            "Tokens billed by the LLM API, by kind (input, output, cache_read, cache_write).",
            ["model", "kind"], registry=r,
        )
        self.generations = Counter(
            "llmexec_llm_generations_total",
            "LLM calls by outcome (ok, malformed: the answer ignored the submit_code tool).",
            ["model", "outcome"], registry=r,
        )
        self.validation_failures = Counter(
            "llmexec_llm_validation_failures_total",
            "Programs failing validation, by rule broken and source (llm, user).",
            ["rule", "source"], registry=r,
        )
        self.repairs = Counter(
            "llmexec_llm_repairs_total",
            "Code sent back to the model to fix, by what failed (validation, runtime).",
            ["reason"], registry=r,
        )
        self.gave_up = Counter(
            "llmexec_llm_gave_up_total",
            "Requests finished without working code, by reason (attempts_exhausted, "
            "llm_error, llm_unavailable, llm_bad_response).",
            ["reason"], registry=r,
        )
        self.latency = Histogram(
            "llmexec_llm_request_seconds", "LLM API round-trip time (successful or not).",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300), registry=r,
        )
        self.api_errors = Counter(
            "llmexec_llm_api_errors_total",
            "Failed LLM calls by error class (rate_limited, overloaded, server_error, timeout, "
            "connection, authentication, permission, not_found, bad_request, malformed, ...).",
            ["error_class"], registry=r,
        )
        self.in_flight = Gauge(
            "llmexec_llm_calls_in_flight", "LLM calls in flight (bounded by LLM_MAX_CONCURRENCY).",
            registry=r,
        )
        self.queue_seconds = Histogram(
            "llmexec_llm_queue_seconds", "Time a call waited for an LLM_MAX_CONCURRENCY slot.",
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60), registry=r,
        )

    def count_usage(self, usage: LlmUsage) -> None:
        for kind, value in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_tokens),
                            ("cache_write", usage.cache_write_tokens)):
            if value:
                self.tokens.labels(usage.model, kind).inc(value)

    def count_validation(self, report: ValidationReport, source: str) -> None:
        """Once per rule a program broke (not per line), so the rate reads as programs."""
        for rule in sorted({issue.rule for issue in report.issues}):
            self.validation_failures.labels(rule, source).inc()
