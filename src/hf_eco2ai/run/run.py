"""`Run`: one training run, from its first event to its report.

Both framework adapters (Transformers, Lightning) and measurement windows translate their events
into calls on a :class:`Run`: :meth:`Run.start`, epoch and evaluation windows, :meth:`Run.step`
(the hot path: a few integer additions), then :meth:`Run.finish` or :meth:`Run.fail`. The run
owns everything between: which telemetry session measures it, the spans and their windows,
projections and budgets, rank facts and job totals, the end-of-run summary, and the finished
:class:`~hf_eco2ai.record.RunRecord` it hands to the report writer.

Lifecycle rules (the process is the user's):

* a run ends exactly once, in the process that began it (a forked child never ends, reports
  or exports its parent's run);
* a run that training left without an end event (an exception caught by a sweep loop, a
  callback garbage-collected, the process exiting) is ended with the energy of its own window,
  up to its last training event, and marked so (:meth:`end_at_last_activity`);
* an explicit callback's settings (output directory, project name, budgets) apply to its run
  even while the instrumentor is active: measurement is shared, reporting is the run's own;
* reports go to the run's output directory, resolved once, at start, to an absolute path.

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> from hf_eco2ai.energy_monitor import EnergyMonitor
    >>> from hf_eco2ai.telemetry.session import TelemetrySession
    >>> config = CarbonConfig(write_report=False)
    >>> monitor = EnergyMonitor(config, sensors=[],
    ...                         intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "config")))
    >>> session = TelemetrySession(config, monitor=monitor)
    >>> run = Run(session, "transformers", "transformers.trainer")
    >>> run.begin({}); run.step(1, samples=8, tokens=0)
    False
    >>> run.finish({}).duration_s >= 0
    True
    >>> session.close()
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry.util.types import AttributeValue

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.distributed import JobAccounting, RankContribution, RankInfo, rank_info
from hf_eco2ai.energy_ledger import Snapshot
from hf_eco2ai.energy_windows import EnergyWindow, measure_window
from hf_eco2ai.output_location import resolve_output_dir
from hf_eco2ai.outputs.summary import summary_line
from hf_eco2ai.projection import Projector
from hf_eco2ai.record import RunRecord, Segment
from hf_eco2ai.run import registry
from hf_eco2ai.run.counters import RunCounters
from hf_eco2ai.run.record import build_record, deliver_record
from hf_eco2ai.telemetry import attributes as A
from hf_eco2ai.telemetry.session import TelemetrySession, active_session
from hf_eco2ai.telemetry.spans import OpenSpan, end_span, open_span

_LOG = logging.getLogger("hf_eco2ai")

Attributes = Mapping[str, AttributeValue]


class Run:
    """One training run of one framework: spans, windows, counters, budgets, record.

    ``config`` is the run's own settings (an explicit callback's); it defaults to the session's.
    ``framework_dir`` is the framework's own output location (the Trainer's ``output_dir``,
    Lightning's ``default_root_dir``): reports go to ``<framework_dir>/hf-eco2ai`` unless
    ``config.output_dir`` is set.
    """

    def __init__(
        self,
        session: TelemetrySession,
        framework: str,
        span_prefix: str,
        *,
        config: CarbonConfig | None = None,
        framework_dir: str | os.PathLike[str] | None = None,
        owns_session: bool = False,
    ) -> None:
        self.session = session
        self.config = config if config is not None else session.config
        self.framework = framework
        self.prefix = span_prefix
        self.run_name = f"{span_prefix}.train"
        self.rank: RankInfo = session.rank
        self.counters = RunCounters(session.counters(framework))
        self.step_every = self.config.step_span_every
        self.output_dir: Path | None = None
        self.last_window: EnergyWindow | None = None
        self.last_summary: str | None = None
        self.record: RunRecord | None = None
        """The finished :class:`~hf_eco2ai.record.RunRecord` (None until the run ends)."""
        self.report_dir: str | None = None
        self.epoch_windows: list[tuple[int, EnergyWindow]] = []
        self.eval_windows: list[EnergyWindow] = []
        self.segments: list[Segment] = []
        self.projector = self._projector()
        self._framework_dir = framework_dir
        self._owns_session = owns_session
        self._pid = os.getpid()
        self._run: OpenSpan | None = None
        self._epoch: OpenSpan | None = None
        self._eval: OpenSpan | None = None
        self._step: OpenSpan | None = None
        self.job: JobAccounting | None = None
        self._total_steps = 0
        self._project_every = 0
        self._start_unix = 0.0
        self._epoch_index = 0
        self._frozen_end: tuple[Snapshot, int] | None = None
        self._last_activity: tuple[Snapshot, int] | None = None
        self._late = False
        self._stop_requested = False
        self._latest = session.monitor.ledger.snapshot  # bound once: one call per step

    # ------------------------------------------------------------------ construction
    @classmethod
    def start(
        cls,
        framework: str,
        span_prefix: str,
        *,
        config: CarbonConfig,
        attrs: Attributes,
        injected: bool = False,
        rank_facts: Mapping[str, int | None] | None = None,
        total_steps: int = 0,
        name: str | None = None,
        framework_dir: str | os.PathLike[str] | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> Run | None:
        """Begin a run on the right session; None when nothing should measure it.

        The instrumentor's session measures every run while instrumented (one sampler per
        process); an explicit callback without the instrumentor, or one given its own
        providers, gets a session of its own for the run. An injected callback whose
        instrumentor is gone measures nothing.
        """
        rank = rank_info(rank_facts)
        active = active_session()
        if active is not None and tracer_provider is None and meter_provider is None:
            active.set_rank(rank)
            session, owns = active, False
        elif injected:
            return None
        else:
            session = TelemetrySession(
                config, rank=rank, tracer_provider=tracer_provider, meter_provider=meter_provider
            )
            owns = True
        try:
            run = cls(
                session,
                framework,
                span_prefix,
                config=config,
                framework_dir=framework_dir,
                owns_session=owns,
            )
            run.begin(attrs, name=name, total_steps=total_steps)
        except BaseException:
            if owns:
                session.close()
            raise
        return run

    def _projector(self) -> Projector:
        config = self.config
        return Projector(
            co2_budget=config.co2_budget,
            energy_budget=config.energy_budget,
            action=config.budget_action,
        )

    # ------------------------------------------------------------------ helpers
    def _now(self) -> tuple[Snapshot, int]:
        return self.session.monitor.snapshot(), time.monotonic_ns()

    def _open(self, name: str, parent: OpenSpan | None, attrs: Attributes) -> OpenSpan:
        snap, t_ns = self._now()
        merged: dict[str, AttributeValue] = dict(self.session.span_identity())
        merged.update(attrs)
        return open_span(self.session.tracer, name, parent, merged, snap, t_ns)

    def _close(
        self,
        opened: OpenSpan,
        attrs: Attributes,
        error: BaseException | None = None,
        kind: str | None = None,
        index: int | None = None,
        end: tuple[Snapshot, int] | None = None,
        derived: Any = None,
    ) -> EnergyWindow:
        end_snap, end_ns = end if end is not None else self._now()
        end_ns = max(end_ns, opened.t_ns)
        window = measure_window(opened.snap, opened.t_ns, end_snap, end_ns)
        if kind is not None:
            self.segments.append(Segment(kind, index, opened.t_ns, end_ns, window))
        extra = derived(window) if derived is not None else {}
        end_time = None
        if end is not None:  # a frozen end: the span ends when the window does
            end_time = time.time_ns() - max(0, time.monotonic_ns() - end_ns)
        end_span(
            opened,
            window,
            self.session.monitor.ledger.pue,
            attrs,
            extra,
            error=error,
            end_time=end_time,
        )
        return window

    @property
    def running(self) -> bool:
        """True between :meth:`begin` and the run's end, in the process that began it."""
        return self._run is not None and os.getpid() == self._pid

    @property
    def evaluating(self) -> bool:
        """True while an evaluation window is open."""
        return self._eval is not None

    def window(self) -> EnergyWindow | None:
        """The energy of the open run so far (None when no run is open)."""
        if self._run is None:
            return None
        end_snap, end_ns = self._frozen_end or self._now()
        return measure_window(self._run.snap, self._run.t_ns, end_snap, end_ns)

    def freeze_end(self) -> EnergyWindow | None:
        """Fix the run's end at this instant and return its window (job totals use it, so a
        rank's share and its run span agree to the joule)."""
        if self._run is None:
            return None
        self._frozen_end = self._now()
        return self.window()

    # ------------------------------------------------------------------ run
    def begin(
        self, attrs: Attributes, name: str | None = None, total_steps: int | None = None
    ) -> None:
        """Open the run span; ``total_steps`` (e.g. ``max_steps``) enables projections every
        1 % of the run (integrations without it call :meth:`update_progress`)."""
        self.run_name = name or f"{self.prefix}.train"
        self.output_dir = resolve_output_dir(self.config.output_dir, self._framework_dir)
        self._start_unix = time.time()
        self._frozen_end = None
        self._run = self._open(self.run_name, None, attrs)
        self._run.attrs.update(attrs)
        self._last_activity = (self._run.snap, self._run.t_ns)
        registry.register(self)
        self.counters.start_run(self._run.snap.energy_j)
        self.projector = self._projector()
        self.set_total_steps(total_steps or 0)
        self.job = JobAccounting.begin(self.rank, self.framework)

    def set_total_steps(self, total_steps: int) -> None:
        """The run's planned optimizer steps (0 = unknown)."""
        self._total_steps = max(0, int(total_steps))
        self._project_every = max(1, self._total_steps // 100) if self._total_steps else 0

    def update_progress(self, progress: float) -> None:
        """Project the run's totals from ``progress`` (0..1) and check budgets (O(devices))."""
        window = self.window()
        if window is None:
            return
        projection = self.projector.update(progress, window.energy_j, window.emissions_g)
        if projection is not None:
            self.counters.set_projection(projection.energy_j, projection.emissions_g)

    def set_run_attributes(self, attrs: Attributes) -> None:
        """Attributes to put on the run span when it ends."""
        if self._run is not None:
            self._run.attrs.update(attrs)

    def finish(self, attrs: Attributes) -> EnergyWindow | None:
        """The run ended normally: job totals (distributed), spans, report, summary."""
        if not self.running:
            self._abandon_in_child()
            return None
        self._finish_job()
        return self._end(attrs, None)

    def fail(self, error: BaseException, attrs: Attributes | None = None) -> EnergyWindow | None:
        """The run ended with ``error``: every open span ends with status ERROR."""
        if not self.running:
            self._abandon_in_child()
            return None
        self.job = None
        return self._end(attrs or {}, error)

    def end_at_last_activity(self, error: BaseException) -> EnergyWindow | None:
        """End a run that training has left without an end event, at its last training event
        (so its window is its own, not the time until somebody noticed)."""
        if not self.running:
            self._abandon_in_child()
            return None
        if self._frozen_end is None and self._last_activity is not None:
            self._frozen_end = self._last_activity
        self._late = True
        self.job = None
        return self._end({A.RUN_ENDED_LATE: True}, error)

    def _abandon_in_child(self) -> None:
        if self._run is not None and os.getpid() != self._pid:
            # a forked child: the run is the parent's; drop it here without a trace
            self._run = self._epoch = self._eval = self._step = None
            self.job = None

    def _finish_job(self) -> None:
        job, self.job = self.job, None
        if job is None:
            return
        try:

            def contribution() -> RankContribution:
                window = self.freeze_end()
                if window is None:  # pragma: no cover - the run is open
                    raise RuntimeError("no open run")
                return RankContribution.from_window(
                    window, self.rank, self.counters.run_samples, self.counters.run_tokens
                )

            totals = job.finish(contribution)
            if totals is not None:
                self.set_run_attributes(totals.attributes())
                _LOG.info("%s", totals.summary_line(self.framework))
        except Exception:
            _LOG.warning("hf-eco2ai: could not compute job totals", exc_info=True)

    def _end(self, attrs: Attributes, error: BaseException | None) -> EnergyWindow | None:
        try:
            return self._end_spans_and_report(attrs, error)
        finally:
            registry.unregister(self)
            if self._owns_session:
                self._owns_session = False
                self.session.close()

    def _end_spans_and_report(
        self, attrs: Attributes, error: BaseException | None
    ) -> EnergyWindow | None:
        frozen = self._frozen_end
        if self._step is not None:
            self._close(self._step, {}, error, end=frozen)
            self._step = None
        if self._eval is not None:
            self.eval_windows.append(self._close(self._eval, {}, error, "evaluation", end=frozen))
            self._eval = None
        if self._epoch is not None:
            self._close(self._epoch, {}, error, "epoch", self._epoch_index, end=frozen)
            self._epoch = None
        if self._run is None:
            return None
        if error is None and self._total_steps:
            self.update_progress(1.0)
        final: dict[str, AttributeValue] = dict(attrs)
        final[A.TRAINING_SAMPLES] = self.counters.run_samples
        if self.counters.run_tokens:
            final[A.TRAINING_TOKENS] = self.counters.run_tokens
        final.update(self.projector.attributes())
        opened, self._run = self._run, None
        self._frozen_end = None
        end_snap = frozen[0] if frozen is not None else self.session.monitor.snapshot()
        samples, tokens = self.counters.run_samples, self.counters.run_tokens

        def efficiency(w: EnergyWindow) -> dict[str, AttributeValue]:
            out: dict[str, AttributeValue] = {}
            if samples:
                out[A.ENERGY_PER_SAMPLE_JOULES] = w.energy_j / samples
            if tokens:
                out[A.ENERGY_PER_TOKEN_JOULES] = w.energy_j / tokens
            return out

        window = self._close(opened, final, error, end=frozen, derived=efficiency)
        self.last_window = window
        self.counters.shared.finish_run(window.energy_j)
        self.last_summary = summary_line(self.framework, window, samples, tokens)
        _LOG.info("%s", self.last_summary)
        try:
            self.record = build_record(self, opened, end_snap, window, error)
            if self.config.write_report and self.output_dir is not None:
                self.report_dir = deliver_record(self.record, self.output_dir)
        except Exception:
            _LOG.warning("hf-eco2ai: could not write the run report", exc_info=True)
        return window

    @property
    def start_unix(self) -> float:
        """Wall-clock time at :meth:`begin` (seconds since the epoch)."""
        return self._start_unix

    @property
    def ended_late(self) -> bool:
        """True when the run was ended at its last training event, after training left it."""
        return self._late

    # ------------------------------------------------------------------ epochs
    def begin_epoch(self, epoch: int, attrs: Attributes | None = None) -> None:
        """Open an epoch window (a child span of the run)."""
        if self._run is None:
            return
        if self._epoch is not None:
            self.end_epoch({})
        merged: dict[str, AttributeValue] = {A.EPOCH: epoch}
        merged.update(attrs or {})
        self._epoch = self._open(f"{self.prefix}.epoch", self._run, merged)
        self._epoch_index = epoch
        self._last_activity = (self._epoch.snap, self._epoch.t_ns)

    def end_epoch(self, attrs: Attributes) -> EnergyWindow | None:
        """End the open epoch window."""
        if self._epoch is None:
            return None
        opened, self._epoch = self._epoch, None
        window = self._close(opened, attrs, None, "epoch", self._epoch_index)
        self.epoch_windows.append((self._epoch_index, window))
        self._last_activity = self._now()
        return window

    # ------------------------------------------------------------------ evaluation
    def begin_evaluate(self, attrs: Attributes | None = None, name: str | None = None) -> bool:
        """Open an evaluation window (child of the epoch or run). False if one is open."""
        if self._eval is not None or self._run is None:
            return False
        parent = self._epoch or self._run
        self._eval = self._open(name or f"{self.prefix}.evaluate", parent, attrs or {})
        return True

    def end_evaluate(
        self, attrs: Attributes, error: BaseException | None = None
    ) -> EnergyWindow | None:
        """End the open evaluation window."""
        if self._eval is None:
            return None
        opened, self._eval = self._eval, None
        window = self._close(opened, attrs, error, "evaluation", len(self.eval_windows))
        self.eval_windows.append(window)
        self._last_activity = self._now()
        return window

    # ------------------------------------------------------------------ steps (hot path)
    def begin_step(self, next_step: int) -> None:
        """Open a sampled step span when ``next_step`` is a multiple of ``step_span_every``."""
        if self.step_every and next_step % self.step_every == 0 and self._run is not None:
            self._step = self._open(
                f"{self.prefix}.step",
                self._epoch or self._run,
                {A.GLOBAL_STEP: next_step},
            )

    def add_work(self, samples: int, tokens: int) -> None:
        """Count micro-batches that did not end in an optimizer step (O(1))."""
        self.counters.add(0, samples, tokens)

    def step(self, global_step: int, samples: int, tokens: int) -> bool:
        """Count one optimizer step (O(1)); True when the framework should stop training now
        (a budget with ``budget_action='stop'`` was exceeded, on a single-rank run)."""
        self.counters.add(1, samples, tokens)
        self._last_activity = (self._latest(), time.monotonic_ns())
        if self._project_every and global_step % self._project_every == 0:
            self.update_progress(global_step / self._total_steps)
        if self._step is not None:
            opened, self._step = self._step, None
            self._close(opened, {A.GLOBAL_STEP: global_step})
        if self.projector.should_stop and not self._stop_requested:
            return self._budget_stop()
        return False

    def _budget_stop(self) -> bool:
        self._stop_requested = True
        if self.rank.distributed:
            # one rank leaving the loop alone would hang the others in their next collective
            _LOG.warning(
                "hf-eco2ai: budget exceeded on rank %d of %d; not stopping a multi-rank job "
                "from one rank (the ranks would desynchronise)",
                self.rank.rank,
                self.rank.world_size,
            )
            return False
        return True
