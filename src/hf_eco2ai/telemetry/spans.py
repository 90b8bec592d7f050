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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from hf_eco2ai._lifecycle import track_run
from hf_eco2ai.ledger import Snapshot
from hf_eco2ai.projection import Projector
from hf_eco2ai.telemetry.metrics import TrainingCounters
from hf_eco2ai.telemetry.session import TelemetrySession
from hf_eco2ai.windows import EnergyWindow, device_energies, measure_window

if TYPE_CHECKING:
    from hf_eco2ai.record import RunRecord, Segment

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


class RunCounters:
    """One run's own samples and tokens; everything also goes to the process-wide counters of
    its framework (what the metrics report), so two runs at once never count into each other."""

    __slots__ = ("framework", "run_samples", "run_tokens", "shared")

    def __init__(self, shared: TrainingCounters) -> None:
        self.shared = shared
        self.framework = shared.framework
        self.run_samples = 0
        self.run_tokens = 0

    def start_run(self, energy_j: float) -> None:
        """Reset this run's counts (and the framework's per-run efficiency baseline)."""
        self.run_samples = self.run_tokens = 0
        self.shared.start_run(energy_j)

    def add(self, steps: int, samples: int, tokens: int) -> None:
        """Count processed work (O(1))."""
        self.run_samples += samples
        self.run_tokens += tokens
        self.shared.add(steps, samples, tokens)

    @property
    def projected_energy_j(self) -> float | None:
        """The framework's latest projected run energy (J)."""
        return self.shared.projected_energy_j

    @projected_energy_j.setter
    def projected_energy_j(self, value: float | None) -> None:
        self.shared.projected_energy_j = value

    @property
    def projected_emissions_g(self) -> float | None:
        """The framework's latest projected run emissions (g)."""
        return self.shared.projected_emissions_g

    @projected_emissions_g.setter
    def projected_emissions_g(self, value: float | None) -> None:
        self.shared.projected_emissions_g = value


class RunTelemetry:
    """Span lifecycle and counters of one training run of one framework."""

    def __init__(self, session: TelemetrySession, framework: str, span_prefix: str) -> None:
        self.session = session
        self.framework = framework
        self.prefix = span_prefix
        self.counters = RunCounters(session.counters(framework))
        self.step_every = session.config.step_span_every
        self._run: _Open | None = None
        self._epoch: _Open | None = None
        self._eval: _Open | None = None
        self._step: _Open | None = None
        self.last_window: EnergyWindow | None = None
        self.epoch_windows: list[tuple[int, EnergyWindow]] = []
        self.eval_windows: list[EnergyWindow] = []
        self.segments: list[Segment] = []
        self.run_name = f"{span_prefix}.train"
        self.last_record: RunRecord | None = None
        self.last_report_dir: str | None = None
        config = session.config
        self.projector = Projector(
            co2_budget=config.co2_budget,
            energy_budget=config.energy_budget,
            action=config.budget_action,
        )
        self._total_steps = 0
        self._project_every = 0
        self._start_unix = 0.0
        self._epoch_index = 0
        self._frozen_end: tuple[Snapshot, int] | None = None

    # ------------------------------------------------------------------ helpers
    def _open(self, name: str, parent: _Open | None, attrs: Attributes) -> _Open:
        ctx = trace.set_span_in_context(parent.span) if parent is not None else None
        span = self.session.tracer.start_span(
            name, context=ctx, kind=SpanKind.INTERNAL, attributes=attrs
        )
        return _Open(span, self.session.monitor.snapshot(), time.monotonic_ns())

    def _close(
        self,
        opened: _Open,
        attrs: Attributes,
        error: BaseException | None = None,
        kind: str | None = None,
        index: int | None = None,
        derived: Callable[[EnergyWindow], Attributes] | None = None,
        end: tuple[Snapshot, int] | None = None,
    ) -> EnergyWindow:
        end_snap, end_ns = (
            end if end is not None else (self.session.monitor.snapshot(), time.monotonic_ns())
        )
        window = measure_window(opened.snap, opened.t_ns, end_snap, end_ns)
        if kind is not None:
            from hf_eco2ai.record import Segment

            self.segments.append(Segment(kind, index, opened.t_ns, end_ns, window))
        span = opened.span
        if span.is_recording():
            span.set_attributes(window_attributes(window, self.session.monitor.ledger.pue))
            span.set_attributes(opened.attrs)
            span.set_attributes(attrs)
            if derived is not None:
                span.set_attributes(derived(window))
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
        end_snap, end_ns = self._frozen_end or (
            self.session.monitor.snapshot(),
            time.monotonic_ns(),
        )
        return measure_window(self._run.snap, self._run.t_ns, end_snap, end_ns)

    def freeze_run_end(self) -> EnergyWindow | None:
        """Fix the run's end at this instant and return its window.

        The run span, when it ends, reports exactly this window; job totals use it, so a rank's
        share and its run span agree to the joule.
        """
        if self._run is None:
            return None
        self._frozen_end = (self.session.monitor.snapshot(), time.monotonic_ns())
        return self.run_window()

    # ------------------------------------------------------------------ run
    def begin_run(
        self, attrs: Attributes, name: str | None = None, total_steps: int | None = None
    ) -> None:
        """Open the run span (a stale one from an interrupted run is ended first).

        ``total_steps`` (e.g. the Trainer's ``max_steps``) enables projections every 1 % of
        the run; integrations without it call :meth:`update_progress` (e.g. per epoch).
        """
        if self._run is not None:
            self.end_run({}, RuntimeError("run span superseded by a new run"))
        self.run_name = name or f"{self.prefix}.train"
        self._start_unix = time.time()
        self._frozen_end = None
        self._run = self._open(self.run_name, None, attrs)
        self._run.attrs.update(attrs)
        track_run(self)  # ended and reported even on SIGTERM or at exit
        self.counters.start_run(self._run.snap.energy_j)
        self.epoch_windows = []
        self.eval_windows = []
        self.segments = []
        config = self.session.config
        self.projector = Projector(
            co2_budget=config.co2_budget,
            energy_budget=config.energy_budget,
            action=config.budget_action,
        )
        self.set_total_steps(total_steps or 0)

    def set_total_steps(self, total_steps: int) -> None:
        """The run's planned optimizer steps (0 = unknown)."""
        self._total_steps = max(0, int(total_steps))
        self._project_every = max(1, self._total_steps // 100) if self._total_steps else 0

    def update_progress(self, progress: float) -> None:
        """Project the run's totals from ``progress`` (0..1) and check budgets (O(devices))."""
        window = self.run_window()
        if window is None:
            return
        projection = self.projector.update(progress, window.energy_j, window.emissions_g)
        if projection is not None:
            self.counters.projected_energy_j = projection.energy_j
            self.counters.projected_emissions_g = projection.emissions_g

    @property
    def should_stop(self) -> bool:
        """True once a budget was exceeded with ``budget_action='stop'``."""
        return self.projector.should_stop

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
            self.eval_windows.append(self._close(self._eval, {}, error, "evaluation"))
            self._eval = None
        if self._epoch is not None:
            self._close(self._epoch, {}, error, "epoch", self._epoch_index)
            self._epoch = None
        if self._run is None:
            return None
        if error is None and self._total_steps:
            self.update_progress(1.0)
        final: dict[str, AttributeValue] = dict(attrs)
        final["hf_eco2ai.training.samples"] = self.counters.run_samples
        if self.counters.run_tokens:
            final["hf_eco2ai.training.tokens"] = self.counters.run_tokens
        final.update(self._budget_attributes())
        opened, self._run = self._run, None
        frozen, self._frozen_end = self._frozen_end, None
        end_snap = frozen[0] if frozen is not None else self.session.monitor.snapshot()
        samples, tokens = self.counters.run_samples, self.counters.run_tokens

        def efficiency(w: EnergyWindow) -> dict[str, AttributeValue]:
            out: dict[str, AttributeValue] = {}
            if samples:
                out["hf_eco2ai.energy_per_sample.joules"] = w.energy_j / samples
            if tokens:
                out["hf_eco2ai.energy_per_token.joules"] = w.energy_j / tokens
            return out

        window = self._close(opened, final, error, derived=efficiency, end=frozen)
        self.last_window = window
        try:
            self._record_run(opened, end_snap, window, error)
        except Exception:
            _LOG.warning("hf-eco2ai: could not write the run report", exc_info=True)
        return window

    def _budget_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {}
        latest = self.projector.latest
        if latest is not None:
            attrs["hf_eco2ai.projected.energy.joules"] = latest.energy_j
            attrs["hf_eco2ai.projected.emissions.grams"] = latest.emissions_g
            attrs["hf_eco2ai.projected.progress"] = latest.progress
        if self.projector.has_budget:
            attrs["hf_eco2ai.budget.action"] = self.projector.action
            attrs["hf_eco2ai.budget.projected_over"] = self.projector.projected_over
            attrs["hf_eco2ai.budget.exceeded"] = self.projector.exceeded
            attrs["hf_eco2ai.budget.stopped"] = self.projector.should_stop
            if self.projector.co2_budget is not None:
                attrs["hf_eco2ai.budget.co2.grams"] = self.projector.co2_budget
            if self.projector.energy_budget is not None:
                attrs["hf_eco2ai.budget.energy.joules"] = self.projector.energy_budget
        return attrs

    def _record_run(
        self, opened: _Open, end_snap: Snapshot, window: EnergyWindow, error: BaseException | None
    ) -> None:
        from hf_eco2ai.outputs import print_summary, write_run_report
        from hf_eco2ai.record import DeviceTotal, RunRecord

        config = self.session.config
        end_ns = opened.t_ns + int(window.duration_s * 1e9)
        before = device_energies(opened.snap, opened.t_ns)
        after = device_energies(end_snap, end_ns)
        devices = [
            DeviceTotal(
                dev.info,
                max(0.0, after[k] - (before[k] if k < len(before) else 0.0)),
                dev.status,
                dev.errors,
            )
            for k, dev in enumerate(end_snap.devices)
        ]
        if error is None:
            status, error_type = "ok", None
        else:
            interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
            status = "interrupted" if interrupted else "error"
            error_type = type(error).__qualname__
        rank = getattr(self.session, "rank", None)
        record = RunRecord(
            framework=self.framework,
            span=self.run_name,
            status=status,
            error_type=error_type,
            start_unix=self._start_unix,
            end_unix=time.time(),
            start_ns=opened.t_ns,
            end_ns=end_ns,
            window=window,
            devices=devices,
            samples=self.counters.run_samples,
            tokens=self.counters.run_tokens,
            pue=self.session.monitor.ledger.pue,
            segments=list(self.segments),
            attributes=dict(opened.attrs),
            projection=self.projector.latest,
            budget={
                "co2_budget_g": self.projector.co2_budget,
                "energy_budget_j": self.projector.energy_budget,
                "action": self.projector.action,
                "projected_over": self.projector.projected_over,
                "exceeded": self.projector.exceeded,
                "stopped": self.projector.should_stop,
            },
            rank=int(getattr(rank, "rank", 0)),
            local_rank=int(getattr(rank, "local_rank", 0)),
            world_size=int(getattr(rank, "world_size", 1)),
            project_name=config.project_name,
            experiment_description=config.experiment_description,
            history=self.session.monitor.history(),
        )
        host = getattr(rank, "host_name", None)
        if isinstance(host, str) and host:
            record.host = host
        self.last_record = record
        if not config.write_report:
            return
        written = write_run_report(record, config.output_dir, png=True)
        self.last_report_dir = str(written.directory)
        if record.rank == 0:
            print_summary(written.report)
            _LOG.info("hf-eco2ai: run report written to %s", written.directory)

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
        window = self._close(opened, attrs, None, "epoch", self._epoch_index)
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
        window = self._close(opened, attrs, error, "evaluation")
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
        if self._project_every and global_step % self._project_every == 0:
            self.update_progress(global_step / self._total_steps)
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
