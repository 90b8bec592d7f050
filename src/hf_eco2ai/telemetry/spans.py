"""Spans that carry the energy and CO2 of their own time window. Emit only.

A span is opened with the latest snapshot and the monotonic time (O(1), no I/O); when it ends,
the run hands it the window measured between the two snapshots and the span gets the window's
``hf_eco2ai.*`` attributes. No lifecycle, no report: :mod:`hf_eco2ai.run` decides when spans open
and end; this module only turns windows into span attributes.

Example:
    >>> from opentelemetry.trace import NoOpTracer
    >>> from hf_eco2ai.energy_ledger import empty_snapshot
    >>> snap = empty_snapshot([], 1.0)
    >>> opened = open_span(NoOpTracer(), "demo", None, {"a": 1}, snap, 0)
    >>> opened.span.is_recording()
    False
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from hf_eco2ai.energy_ledger import Snapshot
from hf_eco2ai.energy_windows import EnergyWindow
from hf_eco2ai.telemetry import attributes as A

Attributes = Mapping[str, AttributeValue]


class OpenSpan:
    """A span, the snapshot and time at its start, and attributes to add when it ends."""

    __slots__ = ("attrs", "snap", "span", "t_ns")

    def __init__(self, span: Span, snap: Snapshot, t_ns: int) -> None:
        self.span = span
        self.snap = snap
        self.t_ns = t_ns
        self.attrs: dict[str, AttributeValue] = {}


def open_span(
    tracer: Tracer,
    name: str,
    parent: OpenSpan | None,
    attrs: Attributes,
    snap: Snapshot,
    t_ns: int,
) -> OpenSpan:
    """Start an ``INTERNAL`` span (a child of ``parent`` when given, else of the current span)."""
    ctx = trace.set_span_in_context(parent.span) if parent is not None else None
    span = tracer.start_span(name, context=ctx, kind=SpanKind.INTERNAL, attributes=attrs)
    return OpenSpan(span, snap, t_ns)


def end_span(
    opened: OpenSpan,
    window: EnergyWindow,
    pue: float,
    *attribute_sets: Attributes,
    error: BaseException | None = None,
    end_time: int | None = None,
) -> None:
    """End ``opened`` with the window's attributes, its own, then ``attribute_sets`` in order.

    ``end_time`` (ns since the epoch) ends the span in the past, where its window ended.
    """
    span = opened.span
    if span.is_recording():
        span.set_attributes(window_attributes(window, pue))
        span.set_attributes(opened.attrs)
        for attrs in attribute_sets:
            span.set_attributes(attrs)
        if error is not None:
            record_error(span, error)
    span.end(end_time=end_time)


def window_attributes(window: EnergyWindow, pue: float) -> dict[str, AttributeValue]:
    """The ``hf_eco2ai.*`` span attributes of a measured window (names: the registry,
    :mod:`hf_eco2ai.telemetry.attributes`)."""
    attrs: dict[str, AttributeValue] = {
        A.ENERGY_JOULES: window.energy_j,
        A.ENERGY_JOULES_LOW: window.energy_low_j,
        A.ENERGY_JOULES_HIGH: window.energy_high_j,
        A.EMISSIONS_GRAMS: window.emissions_g,
        A.ENERGY_METHOD: window.method,
        A.ENERGY_EXTRAPOLATED: window.extrapolated,
        A.CARBON_INTENSITY: window.mean_intensity,
        A.GRID_ZONE: window.zone,
        A.GRID_SOURCE: window.source,
        A.PUE: pue,
        A.DURATION_SECONDS: window.duration_s,
        A.ENERGY_SCOPE: "job",
        A.ENERGY_HOST_JOULES: window.host_energy_j,
    }
    if window.gap_s > 0.0:
        attrs[A.ENERGY_GAP_SECONDS] = window.gap_s
    if window.band_coverage is not None:
        attrs[A.ENERGY_BAND_COVERAGE] = window.band_coverage
    other = window.other_cpu_share
    if other is not None:
        attrs[A.HOST_OTHER_CPU_SHARE] = other
    for hw_type, joules in window.energy_by_type.items():
        attrs[A.energy_by_type(hw_type)] = joules
    for hw_type, grams in window.emissions_by_type.items():
        attrs[A.emissions_by_type(hw_type)] = grams
    return attrs


def record_error(span: Span, exc: BaseException, timestamp: int | None = None) -> None:
    """Mark ``span`` failed the semantic-conventions way (the exception event at
    ``timestamp``, ns since the epoch; default now)."""
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc, timestamp=timestamp)


def as_attribute_value(value: Any) -> AttributeValue | None:
    """``value`` if it is a valid attribute value (str, bool, int, float), else None.

    >>> as_attribute_value(1.5), as_attribute_value([1])
    (1.5, None)
    """
    if isinstance(value, (str, bool, int, float)):
        return value
    return None
