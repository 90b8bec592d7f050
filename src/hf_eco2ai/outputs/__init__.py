"""Run outputs: ``report.json``, ``emissions.csv``, ``power.png`` and the text summary.

Outputs only format and write: each takes a finished :class:`~hf_eco2ai.record.RunRecord`
(or the report built from one). At the end of every run (also one that failed or was
interrupted) hf-eco2ai writes, under ``CarbonConfig.output_dir``:

* ``<run_id>/report.json`` — the run's identity, totals by device and type, methods, carbon
  zone/source/mean intensity, PUE, efficiency, per-epoch and per-evaluation breakdown,
  projection and budget, and the sampled power timeline (schema:
  ``hf_eco2ai/data/report.schema.json``, ``schema_version`` 1.x);
* ``emissions.csv`` — one row per run, with eco2ai's columns, appended under a file lock;
* ``<run_id>/power.png`` — power by device over time with epochs and evaluations shaded and
  cumulative CO2 on a second axis (needs the ``plot`` extra; skipped with a note without it).

On global rank 0 a summary table is printed too.

Example:
    >>> from hf_eco2ai.outputs import CSV_NAME, PNG_NAME
    >>> CSV_NAME, PNG_NAME
    ('emissions.csv', 'power.png')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_eco2ai.outputs._files import make_run_directory
from hf_eco2ai.outputs.emissions_csv import CSV_NAME, append_csv, csv_row
from hf_eco2ai.outputs.power_png import (
    PNG_NAME,
    PNG_SKIPPED_NOTE,
    matplotlib_available,
    render_png,
)
from hf_eco2ai.outputs.report_json import JSON_NAME, build_report, write_json
from hf_eco2ai.outputs.summary import print_summary
from hf_eco2ai.record import RunRecord

_LOG = logging.getLogger(__name__)

__all__ = [
    "CSV_NAME",
    "PNG_NAME",
    "WrittenReport",
    "print_summary",
    "render_png",
    "write_run_report",
]


@dataclass(frozen=True)
class WrittenReport:
    """Where a run's report went (a path is None when that file could not be written)."""

    directory: Path
    json_path: Path | None
    csv_path: Path | None
    png_path: Path | None
    report: dict[str, Any]


def write_run_report(
    record: RunRecord, output_dir: str | os.PathLike[str], *, png: bool = True
) -> WrittenReport:
    """Write report.json, append emissions.csv and (with ``png``) draw power.png for ``record``.

    Everything on the calling thread, no thread started. Without matplotlib the PNG is skipped
    and ``report.json`` says so in ``notes``. Each file that cannot be written costs one
    WARNING naming its path and is None in the result; the others are still written.
    """
    base = Path(output_dir)
    report = build_report(record)
    draw = png and matplotlib_available()
    if png and not draw:
        report["notes"].append(PNG_SKIPPED_NOTE)
    directory = base / record.run_id
    made = _attempt(directory, lambda: make_run_directory(base, record.run_id))
    json_path = png_path = None
    if made is not None:
        if made != directory:
            _LOG.warning(
                "hf-eco2ai: %s exists already: this run's report is in %s", directory, made
            )
            directory = made
            report["run"]["id"] = made.name  # the id names the directory the report is in
        json_path = _attempt(directory / JSON_NAME, lambda: write_json(report, directory))
    csv_path = _attempt(base / CSV_NAME, lambda: _append_row(report, base / CSV_NAME))
    if draw and json_path is not None:
        target = directory / PNG_NAME
        png_path = _attempt(target, lambda: target if render_png(report, target) else None)
    return WrittenReport(directory, json_path, csv_path, png_path, report)


def _append_row(report: dict[str, Any], path: Path) -> Path:
    append_csv(path, csv_row(report))
    return path


def _attempt(path: Path, write: Callable[[], Path | None]) -> Path | None:
    """Run ``write``; on failure log one WARNING naming ``path`` and why, and return None."""
    try:
        return write()
    except Exception as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
        _LOG.warning("hf-eco2ai: could not write %s: %s", path, why)
        return None
