"""An in-memory span exporter behind the global tracer provider (installed once per test
session: OpenTelemetry allows setting the provider only once), and reading a trace back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()


def _install() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@dataclass
class Trace:
    spans: list[ReadableSpan]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def names(self) -> set[str]:
        return {s.name for s in self.spans}

    def attr(self, name: str, key: str) -> list[object]:
        return [s.attributes.get(key) for s in self.named(name) if s.attributes]

    def trace_ids(self) -> set[int]:
        return {s.context.trace_id for s in self.spans if s.context}

    def orphans(self) -> list[str]:
        """Spans whose parent is neither in the trace nor the given root."""
        ids = {s.context.span_id for s in self.spans if s.context}
        return [s.name for s in self.spans if s.parent is not None and s.parent.span_id not in ids]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not getattr(_install, "done", False):
        _install()
        _install.done = True  # type: ignore[attr-defined]
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
