#!/usr/bin/env python3
"""Extract (name, vendor, segment, cores, threads, TDP) from CodeCarbon's scraped CPU datasets.

Usage::

    python tools/extract_cpu_cores.py CC_DIR > tools/data/cpu_cores_tdp.csv

``CC_DIR`` is ``codecarbon/data/hardware/cpu_dataset_builder`` of a CodeCarbon checkout
(MIT licence; see ``tools/data/README.md`` for the commit used). Rows without a positive core
count and TDP are dropped; a name listed twice keeps its first row. ``segment`` is ``server``
for Xeon and EPYC parts, else ``client``. Intel's dataset has no thread count (left empty).
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

_NUM = re.compile(r"\d+(?:\.\d+)?")


def _num(text: str | None) -> float | None:
    match = _NUM.search(text or "")
    return float(match.group()) if match else None


def _rows(cc_dir: Path) -> list[tuple[str, str, str, float | None, float | None, float | None]]:
    out = []
    for name in ("amd_cpu_server_dataset.csv", "amd_cpu_desktop_dataset.csv"):
        with open(cc_dir / name, encoding="utf-8-sig", newline="") as fh:
            for r in csv.DictReader(fh):
                cores, threads = _num(r["# of CPU Cores"]), _num(r["# of Threads"])
                segment = "server" if "EPYC" in r["Name"] else "client"
                out.append((r["Name"], "AMD", segment, cores, threads, _num(r["Default TDP"])))
    with open(cc_dir / "intel_cpu_ark_dataset.csv", encoding="utf-8-sig", newline="") as fh:
        for r in csv.DictReader(fh):
            segment = "server" if "Xeon" in r["cpu_name"] else "client"
            out.append(
                (r["cpu_name"], "Intel", segment, _num(r["total_cores"]), None, _num(r["tdp"]))
            )
    return out


def main(argv: list[str]) -> int:
    """Write the CSV to stdout."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    seen: set[str] = set()
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["name", "vendor", "segment", "cores", "threads", "tdp_w"])
    for name, vendor, segment, cores, threads, tdp in _rows(Path(argv[0])):
        clean = " ".join(name.replace("®", "").replace("™", "").split())
        if not cores or not tdp or cores <= 0 or tdp <= 0 or clean in seen:
            continue
        seen.add(clean)
        writer.writerow(
            [
                clean,
                vendor,
                segment,
                f"{cores:g}",
                "" if threads is None else f"{threads:g}",
                f"{tdp:g}",
            ]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
