"""``emissions.csv``: one row per run with eco2ai's columns, appended under a file lock.

Example:
    >>> from hf_eco2ai.outputs.emissions_csv import csv_safe
    >>> csv_safe("=HYPERLINK(...)")
    "'=HYPERLINK(...)"
"""

from __future__ import annotations

import csv
import io
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from hf_eco2ai.outputs._files import FILE_MODE, makedirs

CSV_NAME = "emissions.csv"
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


def csv_safe(value: str) -> str:
    """Neutralise spreadsheet formulas in a text cell (CSV injection).

    A carriage return becomes a line feed: the writer (``lineterminator="\\n"``) does not quote a
    cell for a bare CR, which readers take as the end of the row, so text after it would start
    a row of its own (and could be a formula).
    """
    safe = "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    return safe.replace("\r\n", "\n").replace("\r", "\n")


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
    makedirs(path.parent)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
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
