"""The LLM worker's spans: one per attempt (a repair is an attempt), the model call with
its usage (OpenTelemetry ``gen_ai.*`` names), and validation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Span

from llm_worker.validation import CodeCheck
from pipeline.observability import tracing
from schemas import LlmUsage


@contextmanager
def attempt(number: int, repair: str | None, source: str = "llm") -> Iterator[Span]:
    """One attempt at the request; ``repair`` says what failed before it (validation,
    runtime) or is None for the first."""
    name = "llm.attempt" if repair is None else "llm.repair"
    with tracing.span(name, attempt=number, repair=repair, source=source) as current:
        yield current


@contextmanager
def generating(model: str) -> Iterator[Span]:
    with tracing.span("llm.generate", semconv={"gen_ai.system": "anthropic",
                                               "gen_ai.operation.name": "chat",
                                               "gen_ai.request.model": model}) as current:
        yield current


def generated(current: Span, usage: LlmUsage | None) -> None:
    if usage is None:
        return
    current.set_attributes({
        "gen_ai.response.model": usage.model,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read_input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation_input_tokens": usage.cache_write_tokens,
    })


@contextmanager
def validating(source: str) -> Iterator[list[CodeCheck]]:
    """Put the check into the yielded list; its verdict becomes the span's attributes."""
    checks: list[CodeCheck] = []
    with tracing.span("validate", source=source) as current:
        yield checks
        if checks:
            report = checks[-1].report
            tracing.set_attributes(current, ok=report.ok,
                                   rules=sorted({i.rule for i in report.issues}))
