"""Training spans that carry the energy and CO2 of their own time window.

:class:`RunTelemetry` is framework-neutral: the Transformers and Lightning callbacks translate
their hooks into ``begin_run`` / ``begin_epoch`` / ``begin_evaluate`` / ``step`` / ``end_*``.
Each span reads a snapshot at its start and at its end (O(devices), no I/O) and records the
difference as ``hf_eco2ai.*`` attributes. Step spans are sampled (``step_span_every``).

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> from hf_eco2ai.monitor import EnergyMonitor
    >>> from hf_eco2ai.telemetry.session import TelemetrySession
    >>> monitor = EnergyMonitor(CarbonConfig(), sensors=[],
    ...                         intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "config")))
    >>> run = RunTelemetry(TelemetrySession(CarbonConfig(), monitor=monitor), "transformers",
    ...                    "transformers.trainer")
    >>> run.begin_run({}); run.step(1, samples=8, tokens=0)
    >>> window = run.end_run({}); window.duration_s >= 0
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from hf_eco2ai.ledger import Snapshot
from hf_eco2ai.telemetry.session import TelemetrySession
from hf_eco2ai.windows import EnergyWindow, measure_window

_LOG = logging.getLogger("hf_eco2ai")

Attributes = Mapping[str, AttributeValue]


class _Open:
    """A span and the snapshot/time at its start."""

    __slots__ = ("attrs", "snap", "span", "t_ns")

    def __init__(self, span: Span, snap: Snapshot, t_ns: int) -> None:
        self.span = span
        self.snap = snap
        self.t_ns = t_ns
        self.attrs: dict[str, AttributeValue] = {}


def window_attributes(window: EnergyWindow, pue: float) -> dict[str, AttributeValue]:
    """The ``hf_eco2ai.*`` span attributes of a measured window."""
    attrs: dict[str, AttributeValue] = {
        "hf_eco2ai.energy.joules": window.energy_j,
        "hf_eco2ai.energy.joules.low": window.energy_low_j,
        "hf_eco2ai.energy.joules.high": window.energy_high_j,
        "hf_eco2ai.emissions.grams": window.emissions_g,
        "hf_eco2ai.energy.method": window.method,
        "hf_eco2ai.energy.approximate": window.approximate,
        "hf_eco2ai.carbon_intensity": window.mean_intensity,
        "hf_eco2ai.grid.zone": window.zone,
        "hf_eco2ai.grid.source": window.source,
        "hf_eco2ai.pue": pue,
        "hf_eco2ai.duration.seconds": window.duration_s,
    }
    for hw_type, joules in window.energy_by_type.items():
        attrs[f"hf_eco2ai.energy.{hw_type}.joules"] = joules
    for hw_type, grams in window.emissions_by_type.items():
        attrs[f"hf_eco2ai.emissions.{hw_type}.grams"] = grams
    return attrs


def record_error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed the semantic-conventions way."""
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc)


class RunTelemetry:
    """Span lifecycle and counters of one training run of one framework."""

    def __init__(self, session: TelemetrySession, framework: str, span_prefix: str) -> None:
        self.session = session
        self.framework = framework
        self.prefix = span_prefix
        self.counters = session.counters(framework)
        self.step_every = session.config.step_span_every
        self._run: _Open | None = None
        self._epoch: _Open | None = None
        self._eval: _Open | None = None
        self._step: _Open | None = None
        self.last_window: EnergyWindow | None = None
        self.epoch_windows: list[tuple[int, EnergyWindow]] = []
        self.eval_windows: list[EnergyWindow] = []
        self.run_name = f"{span_prefix}.train"

    # ------------------------------------------------------------------ helpers
    def _open(self, name: str, parent: _Open | None, attrs: Attributes) -> _Open:
        ctx = trace.set_span_in_context(parent.span) if parent is not None else None
        span = self.session.tracer.start_span(
            name, context=ctx, kind=SpanKind.INTERNAL, attributes=attrs
        )
        return _Open(span, self.session.monitor.snapshot(), time.monotonic_ns())

    def _close(
        self, opened: _Open, attrs: Attributes, error: BaseException | None = None
    ) -> EnergyWindow:
        window = measure_window(
            opened.snap, opened.t_ns, self.session.monitor.snapshot(), time.monotonic_ns()
        )
        span = opened.span
        if span.is_recording():
            span.set_attributes(window_attributes(window, self.session.monitor.ledger.pue))
            span.set_attributes(opened.attrs)
            span.set_attributes(attrs)
            if error is not None:
                record_error(span, error)
        span.end()
        return window

    @property
    def running(self) -> bool:
        """True between :meth:`begin_run` and :meth:`end_run`."""
        return self._run is not None

    @property
    def run_span(self) -> Span | None:
        """The open run span, if any."""
        return self._run.span if self._run is not None else None

    def run_window(self) -> EnergyWindow | None:
        """The energy of the open run so far (None when no run is open)."""
        if self._run is None:
            return None
        return measure_window(
            self._run.snap, self._run.t_ns, self.session.monitor.snapshot(), time.monotonic_ns()
        )

    # ------------------------------------------------------------------ run
    def begin_run(self, attrs: Attributes, name: str | None = None) -> None:
        """Open the run span (a stale one from an interrupted run is ended first)."""
        if self._run is not None:
            self.end_run({}, RuntimeError("run span superseded by a new run"))
        self.run_name = name or f"{self.prefix}.train"
        self._run = self._open(self.run_name, None, attrs)
        self.counters.start_run(self._run.snap.energy_j)
        self.epoch_windows = []
        self.eval_windows = []

    def set_run_attributes(self, attrs: Attributes) -> None:
        """Attributes to put on the run span when it ends."""
        if self._run is not None:
            self._run.attrs.update(attrs)

    def end_run(self, attrs: Attributes, error: BaseException | None = None) -> EnergyWindow | None:
        """End open step/eval/epoch spans and the run span; returns the run's window."""
        if self._step is not None:
            self._close(self._step, {}, error)
            self._step = None
        if self._eval is not None:
            self.eval_windows.append(self._close(self._eval, {}, error))
            self._eval = None
        if self._epoch is not None:
            self._close(self._epoch, {}, error)
            self._epoch = None
        if self._run is None:
            return None
        final = dict(attrs)
        final["hf_eco2ai.training.samples"] = self.counters.run_samples
        if self.counters.run_tokens:
            final["hf_eco2ai.training.tokens"] = self.counters.run_tokens
        opened, self._run = self._run, None
        window = self._close(opened, final, error)
        if opened.span.is_recording() and self.counters.run_samples:
            opened.span.set_attribute(
                "hf_eco2ai.energy_per_sample.joules", window.energy_j / self.counters.run_samples
            )
        self.last_window = window
        return window

    # ------------------------------------------------------------------ epoch
    def begin_epoch(self, epoch: int, attrs: Attributes | None = None) -> None:
        """Open an epoch span (child of the run span)."""
        if self._epoch is not None:
            self.end_epoch({})
        merged: dict[str, AttributeValue] = {"hf_eco2ai.epoch": epoch}
        merged.update(attrs or {})
        self._epoch = self._open(f"{self.prefix}.epoch", self._run, merged)
        self._epoch_index = epoch

    def end_epoch(self, attrs: Attributes) -> EnergyWindow | None:
        """End the open epoch span."""
        if self._epoch is None:
            return None
        opened, self._epoch = self._epoch, None
        window = self._close(opened, attrs)
        self.epoch_windows.append((self._epoch_index, window))
        return window

    # ------------------------------------------------------------------ evaluation
    @property
    def evaluating(self) -> bool:
        """True while an evaluation span is open."""
        return self._eval is not None

    def begin_evaluate(self, attrs: Attributes | None = None, name: str | None = None) -> bool:
        """Open an evaluation span (child of the epoch or run). False if one is already open."""
        if self._eval is not None:
            return False
        parent = self._epoch or self._run
        self._eval = self._open(name or f"{self.prefix}.evaluate", parent, attrs or {})
        return True

    def end_evaluate(
        self, attrs: Attributes, error: BaseException | None = None
    ) -> EnergyWindow | None:
        """End the open evaluation span."""
        if self._eval is None:
            return None
        opened, self._eval = self._eval, None
        window = self._close(opened, attrs, error)
        self.eval_windows.append(window)
        return window

    # ------------------------------------------------------------------ steps (hot path)
    def begin_step(self, next_step: int) -> None:
        """Open a sampled step span when ``next_step`` is a multiple of ``step_span_every``."""
        if self.step_every and next_step % self.step_every == 0:
            self._step = self._open(
                f"{self.prefix}.step",
                self._epoch or self._run,
                {"hf_eco2ai.global_step": next_step},
            )

    def step(self, global_step: int, samples: int, tokens: int) -> None:
        """Count one optimizer step (O(1)); ends the sampled step span if one is open."""
        self.counters.add(1, samples, tokens)
        if self._step is not None:
            opened, self._step = self._step, None
            self._close(opened, {"hf_eco2ai.global_step": global_step})


def summary_line(framework: str, window: EnergyWindow, samples: int, tokens: int) -> str:
    """One concise line: energy by device type, CO2, J/sample, method."""
    parts = ", ".join(f"{t} {j:.1f} J" for t, j in sorted(window.energy_by_type.items()))
    text = (
        f"hf-eco2ai: {framework} run used {window.energy_j:.1f} J "
        f"[{window.energy_low_j:.1f}..{window.energy_high_j:.1f}] ({parts or 'no devices'}), "
        f"{window.emissions_g:.4f} gCO2e at {window.mean_intensity:.0f} g/kWh "
        f"({window.zone}, {window.source}) in {window.duration_s:.1f} s"
    )
    if samples:
        text += f", {window.energy_j / samples:.4f} J/sample"
    if tokens:
        text += f", {window.energy_j / tokens:.6f} J/token"
    return text + f"; method: {window.method or 'none'}"


def log_summary(framework: str, window: EnergyWindow, samples: int, tokens: int) -> str:
    """Log (INFO, logger ``hf_eco2ai``) and return the end-of-run summary line."""
    line = summary_line(framework, window, samples, tokens)
    _LOG.info("%s", line)
    return line


def as_attribute_value(value: Any) -> AttributeValue | None:
    """``value`` if it is a valid attribute value (str, bool, int, float), else None."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return None
