"""The one-line end-of-run summary (logged at INFO on logger ``hf_eco2ai``)."""

from __future__ import annotations

from hf_eco2ai.windows import EnergyWindow


def format_grams(grams: float) -> str:
    """Grams of CO2e with significant digits at any scale (never ``0.0000 g``).

    >>> format_grams(12.3456), format_grams(0.00042), format_grams(0.0)
    ('12.35 g', '0.42 mg', '0 g')
    """
    if grams == 0:
        return "0 g"
    if abs(grams) < 0.1:
        return f"{grams * 1000:.3g} mg"
    return f"{grams:.4g} g"


def summary_line(framework: str, window: EnergyWindow, samples: int, tokens: int) -> str:
    """One concise line: energy by device type, CO2e, J/sample, method."""
    parts = ", ".join(f"{t} {j:.1f} J" for t, j in sorted(window.energy_by_type.items()))
    text = (
        f"hf-eco2ai: {framework} run used {window.energy_j:.1f} J "
        f"[{window.energy_low_j:.1f}..{window.energy_high_j:.1f}] ({parts or 'no devices'}), "
        f"{format_grams(window.emissions_g)} CO2e at {window.mean_intensity:.0f} g/kWh "
        f"({window.zone}, {window.source}) in {window.duration_s:.1f} s"
    )
    if samples:
        text += f", {window.energy_j / samples:.4g} J/sample"
    if tokens:
        text += f", {window.energy_j / tokens:.4g} J/token"
    return text + f"; method: {window.method or 'none'}"
