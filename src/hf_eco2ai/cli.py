"""The ``hf-eco2ai`` command.

``hf-eco2ai report`` and ``hf-eco2ai compare`` read run reports back: a file that is not a
valid report is one line on stderr, ``hf-eco2ai: <file>: <what is wrong>``, and exit status 2.

``hf-eco2ai doctor`` prints which sensors were found and how each device is measured (measured
or estimated, and why), the carbon-intensity resolution, a short live reading per device, and
the resolved configuration with where each value came from.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    hf-eco2ai ...
    0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from hf_eco2ai.config import CarbonConfig, ConfigError, field_names
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.energy_windows import measure_window, shared_host_note
from hf_eco2ai.outputs.text_table import format_table
from hf_eco2ai.version import __version__


def doctor_report(config: CarbonConfig, seconds: float) -> dict[str, Any]:
    """Discover sensors, resolve the carbon intensity, measure for ``seconds``; return facts."""
    monitor = EnergyMonitor(config.replace(sample_interval=min(config.sample_interval, 0.25)))
    try:
        monitor.start()
        first, t0 = monitor.snapshot(), time.monotonic_ns()
        time.sleep(max(0.0, seconds))
        monitor.stop()
        snap = monitor.snapshot()
        window = measure_window(first, t0, snap, max(t0, snap.t_ns))
        elapsed = max(1e-9, (snap.t_ns - monitor.history().t_ns[0]) / 1e9) if snap.seq else 0.0
        devices = []
        for state in snap.devices:
            info = state.info
            devices.append(
                {
                    "hw.type": info.hw_type.value,
                    "hw.id": info.hw_id,
                    "hw.vendor": info.vendor,
                    "name": info.name,
                    "method": info.method.value,
                    "kind": "measured" if info.measured else "estimated",
                    "uncertainty": info.uncertainty,
                    "band_low": info.band_low,
                    "band_high": info.band_high,
                    "band_coverage": info.band_coverage,
                    # the doctor checks the hardware: host scope (what the device drew)
                    "power_w": state.host_power_w,
                    "energy_j": state.host_energy_j,
                    "energy_low_j": state.host_energy_j * info.band_low,
                    "energy_high_j": state.host_energy_j * info.band_high,
                    "job_energy_j": state.energy_j,
                    "shared": state.shared,
                    "status": state.status,
                    "errors": state.errors,
                    "note": info.note,
                }
            )
        ci = snap.intensity
        return {
            "version": __version__,
            "seconds": elapsed,
            "devices": devices,
            "notes": list(monitor.notes),
            "host_shared": shared_host_note(window),
            "carbon_intensity": {
                "value": ci.value,
                "zone": ci.zone,
                "source": ci.source,
                "resolved_by": monitor.location_method,
                "detail": monitor.location_detail,
            },
            "config": {
                name: {"value": getattr(config, name), "source": config.sources[name]}
                for name in field_names()
            },
        }
    finally:
        monitor.close()


def render_doctor(report: dict[str, Any], out: TextIO) -> None:
    """Write the doctor report as readable tables."""
    w = out.write
    w(f"hf-eco2ai {report['version']} doctor\n\n")
    w("Sensors\n")
    rows = [
        [
            d["hw.type"],
            d.get("hw.vendor", ""),
            d["hw.id"],
            d["name"],
            d["method"],
            f"{d['kind']} (x{d['band_low']:.2f}..x{d['band_high']:.2f}"
            + (f", covers {d['band_coverage']:.0%})" if d["band_coverage"] is not None else ")"),
            f"{d['power_w']:.2f}",
            f"{d['energy_j']:.2f} [{d['energy_low_j']:.2f}..{d['energy_high_j']:.2f}]",
            d["status"] if not d["errors"] else f"{d['status']} ({d['errors']} errors)",
        ]
        for d in report["devices"]
    ]
    if rows:
        w(
            format_table(
                [
                    "type",
                    "vendor",
                    "id",
                    "name",
                    "method",
                    "kind",
                    "power W",
                    "energy J [band]",
                    "status",
                ],
                rows,
            )
        )
        w(f"\n(live reading over {report['seconds']:.1f} s)\n")
        if report.get("host_shared"):
            w(f"{report['host_shared']} (other work on this host)\n")
    else:
        w("  no device is measured (see the notes below)\n")
    w("\nWhy\n")
    for d in report["devices"]:
        if d["note"]:
            w(f"  {d['hw.id']}: {d['note']}\n")
    for note in report["notes"]:
        w(f"  - {note}\n")
    ci = report["carbon_intensity"]
    w("\nCarbon intensity\n")
    w(
        f"  {ci['value']:.1f} gCO2e/kWh, zone {ci['zone']}, source {ci['source']}\n"
        f"  resolved by: {ci['resolved_by']} ({ci['detail']})\n"
    )
    w("\nConfiguration\n")
    w(
        format_table(
            ["field", "value", "from"],
            [[k, repr(v["value"]), v["source"]] for k, v in report["config"].items()],
        )
    )
    w("\n\n")


def _fail(path: object, problem: str) -> int:
    print(f"hf-eco2ai: {path}: {problem}", file=sys.stderr)
    return 2


def _report_command(ns: argparse.Namespace) -> int:
    from hf_eco2ai.outputs.power_png import PNG_NAME, render_png
    from hf_eco2ai.outputs.report_read import ReportError, load_report
    from hf_eco2ai.outputs.summary import summary_table

    try:
        data = load_report(ns.path)
    except ReportError as exc:
        return _fail(exc.path, exc.problem)
    print(summary_table(data))
    if ns.png:
        from pathlib import Path

        base = Path(ns.path)
        target = (base if base.is_dir() else base.parent) / PNG_NAME
        try:
            drawn = render_png(data, target)
        except OSError as exc:
            return _fail(target, exc.strerror or repr(exc))
        if drawn:
            print(f"wrote {target}")
    return 0


def _compare_command(ns: argparse.Namespace) -> int:
    """Stream the reports: each is read, checked, cut down to its comparison row, dropped."""
    from hf_eco2ai.outputs.report_read import ReportError, iter_report_paths, load_report
    from hf_eco2ai.outputs.summary import compare_many_table, compare_table, comparison_row

    rows: list[dict[str, Any]] = []
    skipped = 0
    for path, named in iter_report_paths(ns.reports):
        try:
            rows.append(comparison_row(load_report(path)))
        except ReportError as exc:
            if named:  # a file the user named: say what is wrong with it and stop
                return _fail(exc.path, exc.problem)
            skipped += 1
            _fail(exc.path, f"skipped: {exc.problem}")
    total = len(rows) + skipped
    if skipped:
        print(f"hf-eco2ai: skipped {skipped} of {total} reports (see above)", file=sys.stderr)
    if len(rows) < 2:
        where = " ".join(ns.reports)
        return _fail(where, f"nothing to compare: {len(rows)} valid report(s) of {total} found")
    if len(rows) == 2:
        print(compare_table(*sorted(rows, key=lambda r: str(r["run"]["start"]))))
    else:
        print(compare_many_table(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hf-eco2ai`` console script."""
    parser = argparse.ArgumentParser(prog="hf-eco2ai", description="hf-eco2ai utilities")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    doctor = sub.add_parser("doctor", help="show sensors, methods, a live reading and the config")
    doctor.add_argument("--seconds", type=float, default=2.0, help="live reading length")
    doctor.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report_cmd = sub.add_parser("report", help="re-render a run's summary (and power.png)")
    report_cmd.add_argument("path", help="a report.json or the run directory holding it")
    report_cmd.add_argument("--png", action="store_true", help="also redraw power.png beside it")
    compare_cmd = sub.add_parser(
        "compare",
        help="runs side by side (two: with the change; more: one line each, oldest first)",
    )
    compare_cmd.add_argument(
        "reports",
        nargs="+",
        metavar="REPORT",
        help="a report.json, a run directory, a directory of run directories, or a quoted glob "
        "('runs/*/report.json'); invalid reports found in a directory or glob are skipped",
    )
    ns = parser.parse_args(argv)
    if ns.version:
        print(f"hf-eco2ai {__version__}")
        return 0
    if ns.command == "report":
        return _report_command(ns)
    if ns.command == "compare":
        return _compare_command(ns)
    if ns.command != "doctor":
        parser.print_help()
        return 2
    try:
        config = CarbonConfig.from_env()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    report = doctor_report(config, ns.seconds)
    if ns.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        render_doctor(report, sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
