"""Trace context in event properties, the OTEL_* switch, trace ids in logs."""

from __future__ import annotations

import json

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.errors import ConfigError
from pipeline.observability import tracing
from pipeline.observability.logging import configure_logging
from tests.fakes.spans import spans

__all__ = ["spans"]
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_and_diagnostic_id_are_read() -> None:
    for props in ({"traceparent": TP}, {"Diagnostic-Id": TP}, {"diagnostic-id": TP}):
        ctx = trace.get_current_span(tracing.extract(props)).get_span_context()
        assert f"{ctx.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
        assert ctx.is_remote
    assert not trace.get_current_span(tracing.extract({})).get_span_context().is_valid


def test_inject_adds_the_current_context_but_keeps_a_callers_own(
        spans: InMemorySpanExporter) -> None:
    assert "traceparent" not in tracing.inject({"kind": "request"})  # no span: nothing
    with tracing.span("work") as current:
        out = tracing.inject({"kind": "request"})
        assert out["traceparent"].split("-")[1] == f"{current.get_span_context().trace_id:032x}"
        assert tracing.inject({"traceparent": TP})["traceparent"] == TP


def test_without_otel_variables_nothing_is_installed() -> None:
    assert tracing.configure_tracing("x", env={}) is False
    assert tracing.configure_tracing("x", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                              "OTEL_SDK_DISABLED": "true"}) is False
    assert tracing.configure_tracing("x", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                              "OTEL_TRACES_EXPORTER": "none"}) is False
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        tracing.configure_tracing("x", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_log_lines_inside_a_span_carry_its_ids(spans: InMemorySpanExporter,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        with tracing.span("work") as current:
            structlog.get_logger("t").info("inside")
        structlog.get_logger("t").info("outside")
    finally:
        structlog.reset_defaults()
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:])
    ctx = current.get_span_context()
    assert inside["trace_id"] == f"{ctx.trace_id:032x}"
    assert inside["span_id"] == f"{ctx.span_id:016x}"
    assert "trace_id" not in outside
