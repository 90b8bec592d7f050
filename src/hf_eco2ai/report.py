"""Run reports: what a user sees without any telemetry backend.

At the end of every run (also one that failed or was interrupted) hf-eco2ai writes, under
``CarbonConfig.output_dir``:

* ``<run_id>/report.json`` — the run's identity, totals by device and type, methods, carbon
  zone/source/mean intensity, PUE, efficiency, per-epoch and per-evaluation breakdown,
  projection and budget, and the sampled power timeline (schema:
  ``hf_eco2ai/data/report.schema.json``, ``schema_version`` 1.x);
* ``emissions.csv`` — one row per run, with eco2ai's columns, appended under a file lock;
* ``<run_id>/power.png`` — power by device over time with epochs and evaluations shaded and
  cumulative CO2 on a second axis (needs the ``plot`` extra; skipped with a note without it).

On global rank 0 a summary table is printed too.

Example:
    >>> from hf_eco2ai.report import csv_safe
    >>> csv_safe("=HYPERLINK(...)")
    "'=HYPERLINK(...)"
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from hf_eco2ai._text import format_table
from hf_eco2ai.ledger import J_PER_KWH, History
from hf_eco2ai.projection import Projection
from hf_eco2ai.sensors.base import DeviceInfo
from hf_eco2ai.version import __version__
from hf_eco2ai.windows import EnergyWindow

_LOG = logging.getLogger(__name__)

SCHEMA = "hf-eco2ai/run-report"
SCHEMA_VERSION = "1.0"
CSV_NAME = "emissions.csv"
PNG_NAME = "power.png"
CSV_COLUMNS = (
    "id",
    "project_name",
    "experiment_description",
    "epoch",
    "start_time",
    "duration(s)",
    "power_consumption(kWh)",
    "CO2_emissions(kg)",
    "CPU_name",
    "GPU_name",
    "OS",
    "region/country",
    "cost",
)
"""eco2ai's emissions.csv header, so its users' tooling reads ours."""

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Segment:
    """An epoch or evaluation window and when it happened (monotonic ns)."""

    kind: str
    index: int | None
    start_ns: int
    end_ns: int
    window: EnergyWindow


@dataclass(frozen=True, slots=True)
class DeviceTotal:
    """One device's energy over the run (raw, no PUE)."""

    info: DeviceInfo
    energy_j: float
    status: str
    errors: int


@dataclass
class RunRecord:
    """Everything about one finished run that a report needs (built by ``RunTelemetry``)."""

    framework: str
    span: str
    status: str
    error_type: str | None
    start_unix: float
    end_unix: float
    start_ns: int
    end_ns: int
    window: EnergyWindow
    devices: list[DeviceTotal]
    samples: int
    tokens: int
    pue: float
    segments: list[Segment] = field(default_factory=list)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    projection: Projection | None = None
    budget: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    host: str = field(default_factory=platform.node)
    project_name: str = "hf-eco2ai"
    experiment_description: str = ""
    history: History | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def csv_safe(value: str) -> str:
    """Neutralise spreadsheet formulas in a text cell (CSV injection).

    A carriage return becomes a line feed: the writer (``lineterminator="\\n"``) does not quote a
    cell for a bare CR, which readers take as the end of the row, so text after it would start
    a row of its own (and could be a formula).
    """
    safe = "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    return safe.replace("\r\n", "\n").replace("\r", "\n")


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=timezone.utc).isoformat()


def _ratio(num: float, den: float, scale: float = 1.0) -> float | None:
    return num / den * scale if den else None


# ------------------------------------------------------------------------------ report.json
def build_report(record: RunRecord) -> dict[str, Any]:
    """The report as JSON-ready data (see ``report.schema.json``)."""
    w = record.window
    attrs = record.attributes
    by_type = {
        t: {"energy_j": e, "emissions_g": w.emissions_by_type.get(t, 0.0)}
        for t, e in w.energy_by_type.items()
    }
    params = attrs.get("hf_eco2ai.model.parameters")
    model_class = attrs.get("hf_eco2ai.model.class")
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": record.run_id,
            "framework": record.framework,
            "span": record.span,
            "status": record.status,
            "error_type": record.error_type,
            "start": _iso(record.start_unix),
            "end": _iso(record.end_unix),
            "duration_s": max(0.0, (record.end_ns - record.start_ns) / 1e9),
            "model_class": model_class if isinstance(model_class, str) else None,
            "parameters": params if isinstance(params, int) else None,
            "host": record.host,
            "rank": record.rank,
            "local_rank": record.local_rank,
            "world_size": record.world_size,
            "project_name": record.project_name,
            "experiment_description": record.experiment_description,
            "hf_eco2ai_version": __version__,
        },
        "totals": {
            "energy_j": w.energy_j,
            "energy_low_j": w.energy_low_j,
            "energy_high_j": w.energy_high_j,
            "energy_kwh": w.energy_j / J_PER_KWH,
            "emissions_g": w.emissions_g,
            "emissions_low_g": w.emissions_g * (w.energy_low_j / w.energy_j) if w.energy_j else 0.0,
            "emissions_high_g": w.emissions_g * (w.energy_high_j / w.energy_j)
            if w.energy_j
            else 0.0,
            "by_type": by_type,
            "approximate": w.approximate,
        },
        "devices": [
            {
                "hw_id": d.info.hw_id,
                "hw_type": d.info.hw_type.value,
                "name": d.info.name,
                "vendor": d.info.vendor,
                "method": d.info.method.value,
                "measured": d.info.measured,
                "uncertainty": d.info.uncertainty,
                "energy_j": d.energy_j,
                "status": d.status,
                "errors": d.errors,
                "note": d.info.note,
            }
            for d in record.devices
        ],
        "methods": list(w.methods),
        "measured": bool(record.devices) and all(d.info.measured for d in record.devices),
        "carbon": {
            "zone": w.zone,
            "source": w.source,
            "mean_intensity_g_per_kwh": w.mean_intensity,
            "pue": record.pue,
        },
        "efficiency": {
            "samples": record.samples,
            "tokens": record.tokens,
            "j_per_sample": _ratio(w.energy_j, record.samples),
            "j_per_token": _ratio(w.energy_j, record.tokens),
            "g_per_1k_samples": _ratio(w.emissions_g, record.samples, 1000.0),
            "g_per_1k_tokens": _ratio(w.emissions_g, record.tokens, 1000.0),
        },
        "epochs": [_segment(s, record) for s in record.segments if s.kind == "epoch"],
        "evaluations": [_segment(s, record) for s in record.segments if s.kind == "evaluation"],
        "projection": None
        if record.projection is None
        else {
            "progress": record.projection.progress,
            "projected_energy_j": record.projection.energy_j,
            "projected_emissions_g": record.projection.emissions_g,
        },
        "budget": {
            "co2_budget_g": record.budget.get("co2_budget_g"),
            "energy_budget_j": record.budget.get("energy_budget_j"),
            "action": record.budget.get("action", "warn"),
            "projected_over": bool(record.budget.get("projected_over", False)),
            "exceeded": bool(record.budget.get("exceeded", False)),
            "stopped": bool(record.budget.get("stopped", False)),
        },
        "timeline": _timeline(record),
    }


def _segment(seg: Segment, record: RunRecord) -> dict[str, Any]:
    return {
        "index": seg.index,
        "start_s": (seg.start_ns - record.start_ns) / 1e9,
        "end_s": (seg.end_ns - record.start_ns) / 1e9,
        "duration_s": seg.window.duration_s,
        "energy_j": seg.window.energy_j,
        "emissions_g": seg.window.emissions_g,
        "approximate": seg.window.approximate,
    }


def _timeline(record: RunRecord) -> dict[str, Any]:
    hist = record.history
    empty: dict[str, Any] = {
        "t_s": [],
        "devices": [],
        "power_w": [],
        "energy_j": [],
        "intensity": [],
    }
    if hist is None or hist.t_ns.size == 0:
        return empty
    keep = (hist.t_ns >= record.start_ns) & (hist.t_ns <= record.end_ns)
    t = hist.t_ns[keep]
    base = float(hist.energy_j[keep][0]) if t.size else 0.0
    return {
        "t_s": [round((x - record.start_ns) / 1e9, 4) for x in t.tolist()],
        "devices": [d.hw_id for d in hist.devices],
        "power_w": [[round(v, 4) for v in row] for row in hist.power_w[keep].T.tolist()],
        "energy_j": [round(v - base, 6) for v in hist.energy_j[keep].tolist()],
        "intensity": [round(v, 4) for v in hist.intensity[keep].tolist()],
    }


# ------------------------------------------------------------------------------ files
# Modes before the umask: the user's umask decides, but nothing is ever writable by others
# (a umask of 0 would otherwise make report files in a shared directory editable by anyone).
_DIR_MODE = 0o775
_FILE_MODE = 0o664


def _makedirs(path: Path) -> None:
    """``mkdir -p`` with :data:`_DIR_MODE` for every directory created (umask applies)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=_DIR_MODE)


def _create(path: Path, mode: str, **kwargs: Any) -> Any:
    """``open(path, mode)`` for writing a new file with :data:`_FILE_MODE` (umask applies)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    return open(fd, mode, **kwargs)


# ------------------------------------------------------------------------------ emissions.csv
def csv_row(report: Mapping[str, Any]) -> list[str]:
    """The eco2ai-compatible row of a report."""
    run, totals, carbon = report["run"], report["totals"], report["carbon"]
    cpus = sorted({d["name"] for d in report["devices"] if d["hw_type"] == "cpu"})
    gpus = sorted({d["name"] for d in report["devices"] if d["hw_type"] == "gpu"})
    return [
        run["id"],
        csv_safe(str(run["project_name"])),
        csv_safe(str(run["experiment_description"])),
        str(len(report["epochs"])),
        run["start"],
        f"{run['duration_s']:.3f}",
        format(totals["energy_kwh"], ".12g"),
        format(totals["emissions_g"] / 1000.0, ".12g"),
        csv_safe(" / ".join(cpus) or "N/A"),
        csv_safe(" / ".join(gpus) or "N/A"),
        csv_safe(f"{platform.system()} {platform.release()}".strip()),
        csv_safe(str(carbon["zone"])),
        "N/A",
    ]


def append_csv(path: Path, row: Sequence[str]) -> None:
    """Append ``row`` (header first if the file is new) under an exclusive file lock."""
    _makedirs(path.parent)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, _FILE_MODE)
    with open(fd, "a+", encoding="utf-8", newline="") as handle:
        _lock(handle)
        try:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                writer.writerow(CSV_COLUMNS)
            writer.writerow(row)
            handle.write(buf.getvalue())
            handle.flush()
        finally:
            _unlock(handle)


def _lock(handle: TextIO) -> None:
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]


def _unlock(handle: TextIO) -> None:
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ power.png
def render_png(report: Mapping[str, Any], path: Path) -> bool:
    """Draw power by device over time, epochs/evaluations shaded, cumulative CO2 on a 2nd axis.

    Uses matplotlib's object API (a ``Figure`` on an Agg canvas, no pyplot and none of its
    global state, so it is safe off the main thread) with fixed margins. Returns False (and
    logs why) when matplotlib is not installed.
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
    _makedirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with _create(tmp, "wb") as fh:
        fig.savefig(fh, format="png")
    os.replace(tmp, path)  # readers never see half a PNG
    return True


_png_threads: list[threading.Thread] = []
_png_lock = threading.Lock()


def render_png_in_background(report: Mapping[str, Any], path: Path) -> threading.Thread:
    """Draw ``power.png`` on a background thread, off the training thread.

    The thread is not a daemon: the interpreter waits for it before exiting, so the file is
    complete when the program ends. :func:`wait_for_png` waits for it sooner. A failure is
    logged (training has ended by then; report.json and emissions.csv are already written).
    """

    def draw() -> None:
        time.sleep(0)  # hand the GIL straight back: start() returns without waiting for us
        try:
            render_png(report, path)
        except Exception:
            _LOG.warning("hf-eco2ai: could not draw %s", path, exc_info=True)

    thread = threading.Thread(target=draw, name="hf-eco2ai-png", daemon=False)
    with _png_lock:
        _png_threads[:] = [t for t in _png_threads if t.is_alive()]
        _png_threads.append(thread)
    thread.start()
    return thread


def wait_for_png(timeout: float | None = None) -> bool:
    """Wait until every ``power.png`` being drawn in the background is written.

    Returns True when none is left, False when ``timeout`` (seconds, for all of them
    together) ran out first.

    >>> wait_for_png(timeout=1.0)
    True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _png_lock:
        pending = list(_png_threads)
    for thread in pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        thread.join(left)
    with _png_lock:
        _png_threads[:] = [t for t in _png_threads if t.is_alive()]
        return not _png_threads


# ------------------------------------------------------------------------------ summary table
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


# ------------------------------------------------------------------------------ writing
def load_schema() -> dict[str, Any]:
    """The JSON Schema of report.json."""
    text = (Path(__file__).parent / "data" / "report.schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report.json (a directory holding one is accepted too)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{p} is not an hf-eco2ai run report")
    return data


@dataclass(frozen=True)
class WrittenReport:
    """Where a run's report went."""

    directory: Path
    json_path: Path
    csv_path: Path
    png_path: Path | None
    report: dict[str, Any]


def write_run_report(
    record: RunRecord, output_dir: str | os.PathLike[str], *, png: bool = True
) -> WrittenReport:
    """Write report.json, append emissions.csv and (with ``png``) draw power.png for ``record``.

    Everything on the calling thread; ``png_path`` is None when no PNG was drawn. At the end of
    a run, hf-eco2ai writes with ``png=False`` and draws the PNG with
    :func:`render_png_in_background` once everything else is done.
    """
    base = Path(output_dir)
    directory = base / record.run_id
    _makedirs(directory)
    report = build_report(record)
    json_path = directory / "report.json"
    tmp = json_path.with_suffix(".json.tmp")
    with _create(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(report, indent=2))
    os.replace(tmp, json_path)
    csv_path = base / CSV_NAME
    append_csv(csv_path, csv_row(report))
    png_path: Path | None = directory / PNG_NAME
    if not png or not render_png(report, directory / PNG_NAME):
        png_path = None
    return WrittenReport(directory, json_path, csv_path, png_path, report)


def print_summary(report: Mapping[str, Any], out: TextIO | None = None) -> None:
    """Print the summary table (to stderr by default, away from the program's own output)."""
    stream = out if out is not None else sys.stderr
    stream.write("\n" + summary_table(report) + "\n")
    stream.flush()
