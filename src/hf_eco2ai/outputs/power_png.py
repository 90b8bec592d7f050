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

from hf_eco2ai.ledger import J_PER_KWH
from hf_eco2ai.outputs._files import makedirs, write_atomically

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


def render_png(report: Mapping[str, Any], path: Path) -> bool:
    """Draw power by device over time, epochs/evaluations shaded, cumulative CO2 on a 2nd axis.

    Uses matplotlib's object API (a ``Figure`` on an Agg canvas, no pyplot and none of its
    global state) with fixed margins, on the calling thread. Returns False (and logs why) when
    matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        _LOG.info("hf-eco2ai: power.png skipped: install the 'plot' extra (matplotlib)")
        return False
    tl = report["timeline"]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins: tight_layout() would cost a third of the drawing time
    fig.subplots_adjust(left=0.07, right=0.91, top=0.91, bottom=0.12)
    ax = fig.add_subplot()
    t = tl["t_s"]
    for name, series in zip(tl["devices"], tl["power_w"], strict=False):
        ax.plot(t, series, label=f"{name} (W)", linewidth=1.4)
    for k, ep in enumerate(report["epochs"]):
        ax.axvspan(ep["start_s"], ep["end_s"], color="tab:green", alpha=0.08 if k % 2 else 0.16)
    for ev in report["evaluations"]:
        ax.axvspan(ev["start_s"], ev["end_s"], color="tab:orange", alpha=0.25)
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("power (W)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    co2 = []
    total = 0.0
    prev_e = 0.0
    for e, ci in zip(tl["energy_j"], tl["intensity"], strict=False):
        total += max(0.0, e - prev_e) / J_PER_KWH * ci
        prev_e = e
        co2.append(total)
    ax2.plot(t, co2, color="black", linestyle="--", linewidth=1.2, label="cumulative CO2 (g)")
    ax2.set_ylabel("cumulative CO2e (g)")
    run = report["run"]
    ax.set_title(
        f"{run['framework']} run {run['id'][:8]}: {report['totals']['energy_j']:.1f} J, "
        f"{report['totals']['emissions_g']:.3f} gCO2e ({report['carbon']['zone']})",
        y=1.01,  # a fixed position: the automatic one measures every tick label again
    )
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = ax2.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="upper left", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    makedirs(path.parent)
    write_atomically(path, buf.getvalue())  # readers never see half a PNG
    return True
