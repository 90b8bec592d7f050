"""``power.png``: power by device over time, epochs/evaluations shaded, cumulative CO2e.

Example:
    >>> from hf_eco2ai.outputs.power_png import PNG_NAME
    >>> PNG_NAME
    'power.png'
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_eco2ai.energy_ledger import J_PER_KWH
from hf_eco2ai.outputs._files import makedirs, write_atomically
from hf_eco2ai.outputs.summary import format_co2

_LOG = logging.getLogger(__name__)

PNG_NAME = "power.png"
PNG_SKIPPED_NOTE = "power.png not drawn: matplotlib is not installed (the 'plot' extra)"


@functools.cache
def matplotlib_available() -> bool:
    """True when matplotlib can be imported (looked up once per process, without importing it).

    >>> isinstance(matplotlib_available(), bool)
    True
    """
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        return False


def co2_curve(report: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """Cumulative CO2e (g) over the run: 0 g at its start, the report's total at its end.

    Between them, the sampled timeline's increments (energy × the intensity in force). The
    sampled points rarely fall on the run's ends: what the totals hold beyond the timeline
    (before the first sample and after the last) is spread over those two gaps in proportion
    to their length, so the line ends exactly at ``totals.emissions_g``.

    >>> co2_curve({"run": {"duration_s": 4.0}, "totals": {"emissions_g": 3.0},
    ...            "timeline": {"t_s": [1.0, 3.0], "energy_j": [0.0, 3.6e6],
    ...                         "intensity": [1.0, 1.0]}})
    ([0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0])
    """
    tl = report["timeline"]
    duration = float(report["run"]["duration_s"])
    total = float(report["totals"]["emissions_g"])
    t = [float(x) for x in tl["t_s"] if 0.0 <= x <= duration]
    cum = [0.0]
    energy, intensity = tl["energy_j"], tl["intensity"]
    for k in range(1, len(t)):
        cum.append(cum[-1] + max(0.0, energy[k] - energy[k - 1]) / J_PER_KWH * intensity[k])
    if not t:
        return [0.0, duration], [0.0, total]
    observed = cum[-1]
    if observed > total > 0:  # rounding: never end above the total
        cum = [c * total / observed for c in cum]
        observed = total
    gap_before, gap_after = t[0], duration - t[-1]
    gaps = gap_before + gap_after
    before = (total - observed) * gap_before / gaps if gaps > 0 else 0.0
    return [0.0, *t, duration], [0.0, *(before + c for c in cum), total]


CAPTION = (
    "Shaded: green = epochs, orange = evaluations, grey = the CO2e band (low..high estimate, "
    "from each device's uncertainty). Lines: power sampled per device; dashed: cumulative CO2e."
)


def build_figure(report: Mapping[str, Any]) -> Any:
    """The ``power.png`` figure (a matplotlib ``Figure`` on an Agg canvas, not saved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tl, run, totals = report["timeline"], report["run"], report["totals"]
    duration = max(float(run["duration_s"]), 1e-9)
    fig = Figure(figsize=(10, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins: tight_layout() would cost a third of the drawing time
    fig.subplots_adjust(left=0.07, right=0.91, top=0.91, bottom=0.17)
    ax = fig.add_subplot()
    t = tl["t_s"]
    few = len(t) < 3  # a short run: show the readings themselves
    for name, series in zip(tl["devices"], tl["power_w"], strict=False):
        ax.plot(t, series, label=f"{name} (W)", linewidth=1.4, marker="o" if few else None)
    for k, ep in enumerate(report["epochs"]):
        alpha = 0.08 if k % 2 else 0.16
        ax.axvspan(
            ep["start_s"], ep["end_s"], color="tab:green", alpha=alpha, label=None if k else "epoch"
        )
    for k, ev in enumerate(report["evaluations"]):
        ax.axvspan(
            ev["start_s"],
            ev["end_s"],
            color="tab:orange",
            alpha=0.25,
            label=None if k else "evaluation",
        )
    ax.set_xlim(0.0, duration)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("power (W)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    xs, grams = co2_curve(report)
    total = float(totals["emissions_g"])
    scale, unit = (1.0, "g") if total >= 1.0 else (1000.0, "mg")
    ys = [g * scale for g in grams]
    high = 1.0
    if total > 0:
        low, high = totals["emissions_low_g"] / total, totals["emissions_high_g"] / total
        ax2.fill_between(
            xs,
            [y * low for y in ys],
            [y * high for y in ys],
            color="grey",
            alpha=0.2,
            label="CO2e band",
        )
    kind = "measured" if report.get("measured") else "estimated"
    label = f"cumulative CO2e ({unit}, {kind})"
    ax2.plot(xs, ys, color="black", linestyle="--", linewidth=1.2, label=label)
    ax2.set_ylabel(label)
    top = ys[-1] * max(1.0, high)
    ax2.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)  # never a -0.05..0.05 axis
    ax.set_title(
        f"{run['framework']} run {run['id'][:8]}: {totals['energy_j']:.1f} J, "
        f"{format_co2(total)} CO2e ({report['carbon']['zone']}), {kind}",
        y=1.01,  # a fixed position: the automatic one measures every tick label again
    )
    fig.text(0.07, 0.02, CAPTION, fontsize=7.5, color="dimgray")
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = ax2.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="upper left", fontsize=8)
    return fig


def render_png(report: Mapping[str, Any], path: Path) -> bool:
    """Draw ``power.png`` (:func:`build_figure`) to ``path``; False without matplotlib.

    Uses matplotlib's object API (a ``Figure`` on an Agg canvas, no pyplot and none of its
    global state) with fixed margins, on the calling thread. Returns False (and logs why) when
    matplotlib is not installed.
    """
    try:
        fig = build_figure(report)
    except ImportError:
        _LOG.info("hf-eco2ai: power.png skipped: install the 'plot' extra (matplotlib)")
        return False
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    makedirs(path.parent)
    write_atomically(path, buf.getvalue())  # readers never see half a PNG
    return True
