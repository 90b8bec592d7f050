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
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from hf_eco2ai.energy_windows import EnergyWindow, shared_host_note
from hf_eco2ai.outputs.text_table import format_table


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
        kind = "measured" if d["measured"] else f"estimated {_band(d)}"
        rows.append([d["hw_type"], d["hw_id"], d["method"], kind, f"{d['energy_j']:.2f}"])
    head = (
        f"hf-eco2ai run {run['id'][:8]} ({run['framework']}, {run['status']}, "
        f"{run['duration_s']:.1f} s)\n"
    )
    body = format_table(["type", "device", "method", "kind", "energy J"], rows) if rows else ""
    lines = [
        head + body,
        f"total (this job): {totals['energy_j']:.2f} J "
        f"[{totals['energy_low_j']:.2f}..{totals['energy_high_j']:.2f}{_coverage(totals)}]"
        f" = {totals['energy_kwh']:.6f} kWh (PUE {carbon['pue']:g})",
        f"CO2e: {format_co2(totals['emissions_g'])} "
        f"[{format_co2(totals['emissions_low_g'])}..{format_co2(totals['emissions_high_g'])}] "
        f"at {carbon['mean_intensity_g_per_kwh']:.0f} g/kWh ({carbon['zone']}, {carbon['source']})",
    ]
    if eff["j_per_sample"] is not None:
        lines.append(
            f"efficiency: {eff['j_per_sample']:.4f} J/sample, "
            f"{format_co2(eff['g_per_1k_samples'])} CO2e per 1k samples"
            + (f", {eff['j_per_token']:.6f} J/token" if eff["j_per_token"] is not None else "")
        )
    proj = report.get("projection")
    if proj is not None:
        lines.append(
            f"projected at {proj['progress']:.0%}: {proj['projected_energy_j']:.2f} J, "
            f"{format_co2(proj['projected_emissions_g'])} (actual {totals['energy_j']:.2f} J)"
        )
    budget = report["budget"]
    if budget["exceeded"]:
        lines.append(f"budget exceeded (action: {budget['action']})")
    lines.extend(f"note: {note}" for note in report.get("notes", ()))
    return "\n".join(lines)


def _band(device: Mapping[str, Any]) -> str:
    """``×0.52..×3.26 (90 %)`` from a report device (``±50 %`` for reports before 1.2)."""
    band = device.get("band")
    if not band:
        return f"±{device['uncertainty']:.0%}"
    coverage = device.get("band_coverage")
    text = f"×{band[0]:.2f}..×{band[1]:.2f}"
    return text if coverage is None else f"{text} ({coverage:.0%})".replace("%)", " %)")


def _coverage(totals: Mapping[str, Any]) -> str:
    coverage = totals.get("band_coverage")
    return "" if coverage is None else f", covers {coverage:.0%}".replace("%", " %")


def compare_table(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """Two runs side by side: energy, CO2, J/sample, duration."""

    def fmt(v: float | None, spec: str) -> str:
        if v is None:
            return "n/a"
        return format_co2(v) if spec == "co2" else format(v, spec)

    def delta(x: float | None, y: float | None) -> str:
        if x is None or y is None or x == 0:
            return "n/a"
        return f"{(y - x) / x:+.1%}"

    rows = []
    for label, key, spec in (
        ("energy J", ("totals", "energy_j"), ".2f"),
        ("CO2e", ("totals", "emissions_g"), "co2"),
        ("J/sample", ("efficiency", "j_per_sample"), ".5f"),
        ("J/token", ("efficiency", "j_per_token"), ".7f"),
        ("duration s", ("run", "duration_s"), ".1f"),
    ):
        x, y = a[key[0]][key[1]], b[key[0]][key[1]]
        rows.append([label, fmt(x, spec), fmt(y, spec), delta(x, y)])
    return format_table(["", a["run"]["id"][:8], b["run"]["id"][:8], "change"], rows)


def comparison_row(report: Mapping[str, Any]) -> dict[str, Any]:
    """The few facts of a (checked) report that a comparison shows: kept per run instead of
    the whole report, so comparing hundreds of runs holds only these."""
    run, totals, eff = report["run"], report["totals"], report["efficiency"]
    return {
        "run": {k: run[k] for k in ("id", "start", "status", "duration_s")},
        "totals": {k: totals[k] for k in ("energy_j", "emissions_g")},
        "efficiency": {k: eff[k] for k in ("j_per_sample", "j_per_token")},
    }


def compare_many_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Many runs, one line each, oldest first; the energy change is against the oldest.

    >>> row = lambda i, e: {"run": {"id": f"{i}" * 32, "start": f"2026-01-0{i}T00:00:00+00:00",
    ...     "status": "ok", "duration_s": 1.0}, "totals": {"energy_j": e, "emissions_g": 0.5},
    ...     "efficiency": {"j_per_sample": None, "j_per_token": None}}
    >>> print(compare_many_table([row(2, 15.0), row(1, 10.0)]).splitlines()[-1])  # doctest: +NORMALIZE_WHITESPACE
    22222222  2026-01-02 00:00:00  ok  15.00  500 mg  n/a  1.0  +50.0%
    """
    ordered = sorted(rows, key=lambda r: str(r["run"]["start"]))
    base = ordered[0]["totals"]["energy_j"] if ordered else 0.0
    table = []
    for r in ordered:
        run, totals, eff = r["run"], r["totals"], r["efficiency"]
        energy = totals["energy_j"]
        table.append(
            [
                run["id"][:8],
                str(run["start"])[:19].replace("T", " "),
                run["status"],
                f"{energy:.2f}",
                format_co2(totals["emissions_g"]),
                "n/a" if eff["j_per_sample"] is None else f"{eff['j_per_sample']:.5f}",
                f"{run['duration_s']:.1f}",
                f"{(energy - base) / base:+.1%}" if base else "n/a",
            ]
        )
    head = ["run", "start (UTC)", "status", "energy J", "CO2e", "J/sample", "duration s"]
    return format_table([*head, "energy vs first"], table)


def format_co2(grams: float) -> str:
    """Grams of CO2e with three significant digits, in mg below 1 g (never ``0.0000 g``).

    >>> format_co2(0.0000123), format_co2(0.0042), format_co2(12.5), format_co2(0.0)
    ('0.0123 mg', '4.2 mg', '12.5 g', '0 g')
    """
    if grams == 0:
        return "0 g"
    if abs(grams) < 1.0:
        return f"{grams * 1000:.3g} mg"
    return f"{grams:.3g} g" if abs(grams) < 1000 else f"{grams:,.0f} g"


def print_summary(report: Mapping[str, Any], out: TextIO | None = None) -> None:
    """Print the summary table (to stderr by default, away from the program's own output)."""
    stream = out if out is not None else sys.stderr
    stream.write("\n" + summary_table(report) + "\n")
    stream.flush()


def summary_line(framework: str, window: EnergyWindow, samples: int, tokens: int) -> str:
    """The one-line end-of-run summary: energy by device type, band, CO2e, J/sample, method."""
    parts = ", ".join(f"{t} {j:.1f} J" for t, j in sorted(window.energy_by_type.items()))
    text = (
        f"hf-eco2ai: {framework} run used {window.energy_j:.1f} J "
        f"[{window.energy_low_j:.1f}..{window.energy_high_j:.1f}] ({parts or 'no devices'}), "
        f"{format_co2(window.emissions_g)} CO2e at {window.mean_intensity:.0f} g/kWh "
        f"({window.zone}, {window.source}) in {window.duration_s:.1f} s"
    )
    if samples:
        text += f", {window.energy_j / samples:.4g} J/sample"
    if tokens:
        text += f", {window.energy_j / tokens:.4g} J/token"
    text += f"; method: {window.method or 'none'}"
    shared = shared_host_note(window)
    return text if shared is None else f"{text}; {shared}"
