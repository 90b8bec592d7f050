"""Grid carbon intensity: the value in force and the provider interface the sampler reads.

The sampler thread calls :meth:`IntensityProvider.maybe_refresh` and then
:meth:`IntensityProvider.current` once per tick; training callbacks never do.

Example:
    >>> p = StaticIntensity(CarbonIntensity(56.0, zone="FR", source="config"))
    >>> p.current().value
    56.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class CarbonIntensity:
    """A grid carbon intensity in gCO2e/kWh, the zone it applies to and where it came from.

    ``source`` is one of ``config``, ``table:<dataset>@<year>/<basis>`` (a shipped table row, e.g.
    ``table:owid@2024/lifecycle``; basis ``lifecycle`` or ``direct``, see
    :data:`hf_eco2ai.carbon.tables.BASES`), ``world-average@<year>/<basis>``, ``electricitymaps``
    or ``uk-carbon-intensity`` (a live value).
    """

    value: float
    zone: str
    source: str


@runtime_checkable
class IntensityProvider(Protocol):
    """Where the ledger gets the carbon intensity of each sample interval."""

    def current(self) -> CarbonIntensity:
        """The intensity in force now. Must be O(1): no I/O, no blocking."""
        ...

    def maybe_refresh(self, now_monotonic_s: float) -> None:
        """Called from the sampler thread each tick; may fetch (time-boxed) when due."""
        ...

    def close(self) -> None:
        """Release resources. Idempotent."""
        ...


class StaticIntensity:
    """A constant intensity (config override or a table value)."""

    def __init__(self, intensity: CarbonIntensity) -> None:
        self._intensity = intensity

    def current(self) -> CarbonIntensity:
        """The constant value."""
        return self._intensity

    def maybe_refresh(self, now_monotonic_s: float) -> None:
        """Nothing to refresh."""

    def close(self) -> None:
        """Nothing to release."""
