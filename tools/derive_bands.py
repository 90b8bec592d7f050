#!/usr/bin/env python3
"""Derive the uncertainty bands of the CPU TDP model and the RAM model from their error sources.

Usage: ``python tools/derive_bands.py`` (from the repository root, with ``hf_eco2ai``
importable, e.g. ``PYTHONPATH=src``). Prints the bands; ``docs/how-it-measures.md`` quotes the
output verbatim and ``hf_eco2ai.sensors.bands`` holds the same numbers (a test checks both).

A band is ``[estimate x low, estimate x high]``: the errors are multiplicative, so the band is
not symmetric. For each model the script builds the population of ``r = truth / estimate`` over
its error sources, takes ``low`` and ``high`` as its central ``TARGET`` interval (the
``(1 - TARGET) / 2`` and ``(1 + TARGET) / 2`` quantiles, taken at population members and
rounded outwards to 0.01, so a small population is covered at least to ``TARGET``), and
reports the coverage the rounded band achieves on the population.

* **CPU, TDP in the table** (``tdp-model``): the load curve. Truth is each of Boavizta's six
  Intel Xeon consumption profiles (``P(w) = a ln(b (w + c)) + d``, normalised to 1 at full load)
  and Boavizta's generic TDP ratios (0.12, 0.32, 0.75, 1.02 of TDP at 0, 10, 50, 100 % load,
  linear between); the estimate is the linear model ``f + (1 - f) w`` with
  ``f = IDLE_FRACTION``; loads ``w`` = 0, 1, ..., 100 %, equally weighted. This carries the idle
  fraction error (each profile has its own) and the load-curve error (concave curves read
  higher than the line at middling load).
* **CPU, TDP not in the table** (``tdp-model``, per-core default): the load curve times the
  spread of TDP per physical core over the server parts (Xeon, EPYC) of CodeCarbon's scraped
  Intel ARK / AMD datasets (``tools/data/cpu_cores_tdp.csv``), relative to
  ``DEFAULT_TDP_PER_CORE_W``: every (part, profile, load) combination equally weighted.
* **RAM model** (``ram-model``): watts per GB of a DIMM, relative to the model's 0.375 W/GB:
  CodeCarbon's 5 W per x86 DIMM (``RAM_SLOT_POWER_X86``) for DIMMs of 4 to 128 GB (the sizes
  its DIMM-count heuristic assumes), and Crucial's 3 W per 8 GB.

Not in these populations (stated in the docs): how representative the profiles are of other
CPU families, SMT counted wrongly by a hypervisor, and DRAM activity.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hf_eco2ai.sensors.cpu_model import DEFAULT_TDP_PER_CORE_W, IDLE_FRACTION

TARGET = 0.90
"""The coverage each band is built for (the achieved coverage is reported, and is at least this
where the population allows)."""

ROOT = Path(__file__).resolve().parent.parent
CORES_CSV = ROOT / "tools" / "data" / "cpu_cores_tdp.csv"

BOAVIZTA_XEON_PROFILES: dict[str, tuple[float, float, float, float]] = {
    # boaviztapi/data/consumption_profile/cpu/cpu_profile.csv (commit 15878f0), a, b, c, d
    "Xeon Platinum": (171.1813, 0.0354, 36.8953, -10.1336),
    "Xeon Gold": (35.5688, 0.2438, 9.6694, -0.6087),
    "Xeon Silver": (20.7794, 0.3043, 8.4241, 0.8613),
    "Xeon E5": (48.9167, 0.1349, 15.7262, -4.654),
    "Xeon E3": (342.3624, 0.0347, 36.8952, -16.4022),
    "Xeon E": (55.6501, 0.0467, 20.4146, 4.2436),
}
BOAVIZTA_TDP_RATIOS = ((0.0, 10.0, 50.0, 100.0), (0.12, 0.32, 0.75, 1.02))
"""boaviztapi ``ConsumptionProfile._TDP_RATIOS_WORKLOAD`` / ``_TDP_RATIOS`` (share of TDP)."""

RAM_MODEL_W_PER_GB = 0.375
DIMM_W_PER_GB = [5.0 / gb for gb in (4, 8, 16, 32, 64, 128)] + [3.0 / 8]
"""CodeCarbon's 5 W per x86 DIMM at 4..128 GB, and Crucial's 3 W per 8 GB."""


@dataclass(frozen=True)
class Band:
    """A derived band: factors ``low``/``high``, achieved ``coverage``, population, extremes."""

    name: str
    low: float
    high: float
    coverage: float
    n: int
    r_min: float
    r_max: float


def load_curves() -> npt.NDArray[np.float64]:
    """``(profiles, 101)`` true power / TDP at loads 0..100 %."""
    w = np.arange(101, dtype=np.float64)
    curves = []
    for a, b, c, d in BOAVIZTA_XEON_PROFILES.values():
        p = a * np.log(b * (w + c)) + d
        curves.append(p / p[-1])
    xs, ys = BOAVIZTA_TDP_RATIOS
    curves.append(np.interp(w, xs, ys))
    return np.array(curves)


def shape_ratios() -> npt.NDArray[np.float64]:
    """truth / estimate of the load curve over profiles x loads (flattened)."""
    w = np.arange(101, dtype=np.float64) / 100.0
    model = IDLE_FRACTION + (1.0 - IDLE_FRACTION) * w
    return (load_curves() / model).ravel()


def per_core_ratios(path: Path = CORES_CSV) -> npt.NDArray[np.float64]:
    """TDP per physical core of each server part / ``DEFAULT_TDP_PER_CORE_W``."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["segment"] == "server"]
    return np.array([float(r["tdp_w"]) / float(r["cores"]) for r in rows]) / DEFAULT_TDP_PER_CORE_W


def band(name: str, ratios: npt.NDArray[np.float64], target: float = TARGET) -> Band:
    """The central ``target`` interval of ``ratios`` (rounded outwards), with its coverage."""
    q_lo = np.quantile(ratios, (1 - target) / 2, method="lower")
    q_hi = np.quantile(ratios, (1 + target) / 2, method="higher")
    low = math.floor(round(float(q_lo) * 100, 6)) / 100
    high = math.ceil(round(float(q_hi) * 100, 6)) / 100
    inside = float(np.mean((ratios >= low - 1e-12) & (ratios <= high + 1e-12)))
    coverage = math.floor(round(inside * 100, 6)) / 100  # stated to the percent, never rounded up
    return Band(
        name, low, high, coverage, int(ratios.size), float(ratios.min()), float(ratios.max())
    )


def derive() -> list[Band]:
    """The three bands, in the order printed."""
    shape = shape_ratios()
    cores = per_core_ratios()
    unknown = (shape[:, None] * cores[None, :]).ravel()
    ram = np.array(DIMM_W_PER_GB) / RAM_MODEL_W_PER_GB
    return [
        band("tdp-model (TDP from the table)", shape),
        band("tdp-model (per-core default)", unknown),
        band("ram-model", ram),
    ]


def render(bands: list[Band]) -> str:
    """The lines the docs quote."""
    cores = per_core_ratios() * DEFAULT_TDP_PER_CORE_W
    q25, q50, q75 = np.percentile(cores, [25, 50, 75])
    lines = [
        f"server parts: {cores.size:,}, TDP per core median {q50:.2f} W,"
        f" inter-quartile {q25:.2f}-{q75:.2f} W",
        f"idle fraction {IDLE_FRACTION:g}; load-curve profiles: {len(load_curves())}",
    ]
    for b in bands:
        lines.append(
            f"{b.name}: x{b.low:.2f}..x{b.high:.2f}, coverage {b.coverage:.0%} of {b.n:,} cases"
            f" (truth/estimate {b.r_min:.2f}..{b.r_max:.2f})"
        )
    return "\n".join(lines)


def main() -> int:
    """Print the bands."""
    print(render(derive()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
