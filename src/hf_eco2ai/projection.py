"""Projections of a run's total energy and emissions, and carbon/energy budgets.

From the progress of a run (``global_step / max_steps``, or epochs) and the energy used so far,
:class:`Projector` extrapolates the whole run linearly. A budget (``co2_budget`` in g,
``energy_budget`` in J) is checked against the projection (one warning when it will be exceeded)
and against the actual totals (a warning, or a request to stop training gracefully, by
``budget_action``).

Example:
    >>> p = Projector(co2_budget=None, energy_budget=100.0, action="stop")
    >>> p.update(progress=0.25, energy_j=30.0, emissions_g=1.0).energy_j
    120.0
    >>> p.projected_over, p.should_stop
    (True, False)
    >>> _ = p.update(progress=0.9, energy_j=101.0, emissions_g=3.0); p.should_stop
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.util.types import AttributeValue

from hf_eco2ai.telemetry import attributes as A

_LOG = logging.getLogger("hf_eco2ai")

MIN_PROGRESS = 0.01
"""Below 1 % progress a projection is too noisy to report."""


@dataclass(frozen=True, slots=True)
class Projection:
    """The projected totals of a run at some progress (0..1)."""

    progress: float
    energy_j: float
    emissions_g: float


class Projector:
    """Linear projection of a run's totals plus budget checks. O(1) per update."""

    def __init__(
        self, *, co2_budget: float | None, energy_budget: float | None, action: str
    ) -> None:
        self.co2_budget = co2_budget
        self.energy_budget = energy_budget
        self.action = action
        self.latest: Projection | None = None
        self.projected_over = False
        self.exceeded = False
        self.should_stop = False
        self.exceeded_what: str | None = None

    @property
    def has_budget(self) -> bool:
        """True when any budget is set."""
        return self.co2_budget is not None or self.energy_budget is not None

    def attributes(self) -> dict[str, AttributeValue]:
        """The run span's projection and budget attributes (``hf_eco2ai.projected.*``,
        ``hf_eco2ai.budget.*``).

        >>> Projector(co2_budget=5.0, energy_budget=None, action="warn").attributes()[
        ...     "hf_eco2ai.budget.co2.grams"]
        5.0
        """
        attrs: dict[str, AttributeValue] = {}
        latest = self.latest
        if latest is not None:
            attrs[A.PROJECTED_ENERGY_JOULES] = latest.energy_j
            attrs[A.PROJECTED_EMISSIONS_GRAMS] = latest.emissions_g
            attrs[A.PROJECTED_PROGRESS] = latest.progress
        if self.has_budget:
            attrs[A.BUDGET_ACTION] = self.action
            attrs[A.BUDGET_PROJECTED_OVER] = self.projected_over
            attrs[A.BUDGET_EXCEEDED] = self.exceeded
            attrs[A.BUDGET_STOPPED] = self.should_stop
            if self.co2_budget is not None:
                attrs[A.BUDGET_CO2_GRAMS] = self.co2_budget
            if self.energy_budget is not None:
                attrs[A.BUDGET_ENERGY_JOULES] = self.energy_budget
        return attrs

    def budget(self) -> dict[str, object]:
        """The budget facts of a run report."""
        return {
            "co2_budget_g": self.co2_budget,
            "energy_budget_j": self.energy_budget,
            "action": self.action,
            "projected_over": self.projected_over,
            "exceeded": self.exceeded,
            "stopped": self.should_stop,
        }

    def update(self, progress: float, energy_j: float, emissions_g: float) -> Projection | None:
        """Project from ``progress`` (0..1) and the totals so far; check the budgets."""
        projection = None
        if progress >= MIN_PROGRESS:
            p = min(progress, 1.0)
            projection = Projection(p, energy_j / p, emissions_g / p)
            self.latest = projection
        self._check(projection, energy_j, emissions_g)
        return projection

    def _over(self, energy_j: float, emissions_g: float) -> str | None:
        if self.energy_budget is not None and energy_j > self.energy_budget:
            return f"energy {energy_j:.1f} J > budget {self.energy_budget:.1f} J"
        if self.co2_budget is not None and emissions_g > self.co2_budget:
            return f"emissions {emissions_g:.3f} g > budget {self.co2_budget:.3f} g"
        return None

    def _check(self, projection: Projection | None, energy_j: float, emissions_g: float) -> None:
        if not self.has_budget:
            return
        if projection is not None and not self.projected_over:
            what = self._over(projection.energy_j, projection.emissions_g)
            if what is not None:
                self.projected_over = True
                _LOG.warning(
                    "hf-eco2ai: at %.0f %% progress this run is projected to exceed its budget (%s)",
                    projection.progress * 100,
                    what,
                )
        if not self.exceeded:
            what = self._over(energy_j, emissions_g)
            if what is not None:
                self.exceeded = True
                self.exceeded_what = what
                if self.action == "stop":
                    self.should_stop = True
                    _LOG.warning("hf-eco2ai: budget exceeded (%s): stopping training", what)
                else:
                    _LOG.warning("hf-eco2ai: budget exceeded (%s)", what)
