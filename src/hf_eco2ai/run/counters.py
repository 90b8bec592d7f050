"""A run's own counts of samples and tokens, next to the process-wide counters of its framework.

Example:
    >>> from hf_eco2ai.telemetry.metrics import TrainingCounters
    >>> counters = RunCounters(TrainingCounters("demo"))
    >>> counters.start_run(0.0); counters.add(1, 8, 64)
    >>> counters.run_samples, counters.shared.samples
    (8, 8)
"""

from __future__ import annotations

from hf_eco2ai.telemetry.metrics import TrainingCounters


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

    def set_projection(self, energy_j: float, emissions_g: float) -> None:
        """Publish the run's latest projected totals (read by the projection gauges)."""
        self.shared.projected_energy_j = energy_j
        self.shared.projected_emissions_g = emissions_g
