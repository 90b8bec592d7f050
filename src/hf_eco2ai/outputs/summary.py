"""The text summary of a run (printed on rank 0) and two runs side by side.

Example:
    >>> from hf_eco2ai.outputs.summary import compare_table
    >>> run = {"run": {"id": "a" * 32, "duration_s": 1.0},
    ...        "totals": {"energy_j": 10.0, "emissions_g": 1.0},
    ...        "efficiency": {"j_per_sample": None, "j_per_token": None}}
    >>> "energy J" in compare_table(run, run)
    True
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from hf_eco2ai._text import format_table


def summary_table(report: Mapping[str, Any]) -> str:
    """The end-of-run summary as a plain-text table."""
    run, totals, eff, carbon = (
        report["run"],
        report["totals"],
        report["efficiency"],
        report["carbon"],
    )
    rows: list[list[object]] = []
    for d in report["devices"]:
        kind = "measured" if d["measured"] else f"estimated ±{d['uncertainty']:.0%}"
        rows.append([d["hw_type"], d["hw_id"], d["method"], kind, f"{d['energy_j']:.2f}"])
    head = (
        f"hf-eco2ai run {run['id'][:8]} ({run['framework']}, {run['status']}, "
        f"{run['duration_s']:.1f} s)\n"
    )
    body = format_table(["type", "device", "method", "kind", "energy J"], rows) if rows else ""
    lines = [
        head + body,
        f"total: {totals['energy_j']:.2f} J [{totals['energy_low_j']:.2f}..{totals['energy_high_j']:.2f}]"
        f" = {totals['energy_kwh']:.6f} kWh (PUE {carbon['pue']:g})",
        f"CO2e: {totals['emissions_g']:.4f} g at {carbon['mean_intensity_g_per_kwh']:.0f} g/kWh "
        f"({carbon['zone']}, {carbon['source']})",
    ]
    if eff["j_per_sample"] is not None:
        lines.append(
            f"efficiency: {eff['j_per_sample']:.4f} J/sample, "
            f"{eff['g_per_1k_samples']:.4f} gCO2e per 1k samples"
            + (f", {eff['j_per_token']:.6f} J/token" if eff["j_per_token"] is not None else "")
        )
    proj = report.get("projection")
    if proj is not None:
        lines.append(
            f"projected at {proj['progress']:.0%}: {proj['projected_energy_j']:.2f} J, "
            f"{proj['projected_emissions_g']:.4f} g (actual {totals['energy_j']:.2f} J)"
        )
    budget = report["budget"]
    if budget["exceeded"]:
        lines.append(f"budget exceeded (action: {budget['action']})")
    return "\n".join(lines)


def compare_table(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """Two runs side by side: energy, CO2, J/sample, duration."""

    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    def delta(x: float | None, y: float | None) -> str:
        if x is None or y is None or x == 0:
            return "n/a"
        return f"{(y - x) / x:+.1%}"

    rows = []
    for label, key, spec in (
        ("energy J", ("totals", "energy_j"), ".2f"),
        ("CO2e g", ("totals", "emissions_g"), ".4f"),
        ("J/sample", ("efficiency", "j_per_sample"), ".5f"),
        ("J/token", ("efficiency", "j_per_token"), ".7f"),
        ("duration s", ("run", "duration_s"), ".1f"),
    ):
        x, y = a[key[0]][key[1]], b[key[0]][key[1]]
        rows.append([label, fmt(x, spec), fmt(y, spec), delta(x, y)])
    return format_table(["", a["run"]["id"][:8], b["run"]["id"][:8], "change"], rows)


def print_summary(report: Mapping[str, Any], out: TextIO | None = None) -> None:
    """Print the summary table (to stderr by default, away from the program's own output)."""
    stream = out if out is not None else sys.stderr
    stream.write("\n" + summary_table(report) + "\n")
    stream.flush()
