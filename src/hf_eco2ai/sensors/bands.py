"""Uncertainty bands of the estimated methods, with the coverage they were derived for.

The numbers are printed by ``python tools/derive_bands.py`` (which derives them from their error
sources: Boavizta's CPU load curves, the TDP-per-core spread of 1,072 server parts, DIMM power
figures) and quoted in ``docs/how-it-measures.md``; a test checks that all three agree.

A band is ``[estimate x low, estimate x high]`` and contains the truth for ``coverage`` of the
population of cases it was derived from.

Example:
    >>> TDP_TABLE_BAND.low <= 1.0 <= TDP_TABLE_BAND.high, TDP_TABLE_BAND.coverage
    (True, 0.9)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["RAM_MODEL_BAND", "TDP_DEFAULT_BAND", "TDP_TABLE_BAND", "Band"]


@dataclass(frozen=True, slots=True)
class Band:
    """Factors of the estimate bounding the truth, and the share of cases they cover."""

    low: float
    high: float
    coverage: float


TDP_TABLE_BAND: Final[Band] = Band(1.00, 1.71, 0.90)
"""CPU TDP model, TDP from the table: the load-curve error (idle fraction and curve shape)."""

TDP_DEFAULT_BAND: Final[Band] = Band(0.52, 3.26, 0.90)
"""CPU TDP model, per-core default TDP: load-curve error x TDP-per-core spread of server parts."""

RAM_MODEL_BAND: Final[Band] = Band(0.10, 3.34, 1.00)
"""RAM model: watts per GB of DIMMs of 4-128 GB (CodeCarbon's 5 W/DIMM, Crucial's 3 W/8 GB)."""
