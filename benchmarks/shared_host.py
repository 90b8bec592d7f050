"""This job's CPU energy alone and next to a neighbour that keeps one core busy (issue 14 §1).

Usage: ``python benchmarks/shared_host.py [--work 30000000] [--interval 0.1] [--cpu-tdp 20]
[--repeat 1] [--json FILE]``

The same deterministic workload (``--work`` iterations of an integer loop in this process) runs
twice under the CPU TDP model with real psutil CPU times: **alone**, then **shared** with a
neighbour process spinning on one core. The neighbour is started detached (its parent exits, so
it is not in this process tree), and stopped afterwards. Each run is measured as a window
(sampler at ``--interval`` seconds, ``cpu_tdp`` fixed so the numbers do not depend on the CPU
table), and printed in both scopes:

* **job** — this process tree's share of the modelled CPU power (its CPU time / busy CPU time);
* **host** — the modelled power of the CPUs, every process included.

Expected: the job scope about the same in both runs (within 1.5x: the idle power share moves
it by at most ``1 + f_idle x (CPUs - 1)``), the host scope larger when shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import emit, make_parser

from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.energy_ledger import Ledger
from hf_eco2ai.energy_windows import measure_window, shared_host_note
from hf_eco2ai.sampling_thread import Sampler
from hf_eco2ai.sensors.cpu_model import CpuTdpSensor

SPINNER = "while True: pass"


def start_neighbour() -> int:
    """Start a process spinning on one core, outside this process tree; its pid."""
    shell = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c '{SPINNER}' >/dev/null 2>&1 & echo $!"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(shell.stdout.strip())


def stop_neighbour(pid: int) -> None:
    """Stop the neighbour started by :func:`start_neighbour` (by its pid)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return


def workload(n: int) -> int:
    """A fixed amount of CPU work: ``n`` iterations of an integer loop."""
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
    return acc


def run(*, neighbour: bool, work: int, interval_s: float, cpu_tdp: float) -> dict[str, Any]:
    """One measured run of :func:`workload`; both scopes of its CPU energy."""
    pid = start_neighbour() if neighbour else None
    try:
        if pid is not None:
            time.sleep(0.3)  # let it spin up before the baseline
        sensor = CpuTdpSensor.create(cpu_tdp)
        ledger = Ledger(sensor.devices, pue=1.0, history_size=100_000)
        sampler = Sampler(
            [sensor],
            ledger,
            interval_s=interval_s,
            intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "benchmark")),
        )
        sampler.start()
        t0, s0 = time.monotonic_ns(), ledger.snapshot()
        cpu0 = time.process_time()
        workload(work)
        cpu_s = time.process_time() - cpu0
        t1 = time.monotonic_ns()
        sampler.stop()
        w = measure_window(s0, t0, ledger.snapshot(), t1)
    finally:
        if pid is not None:
            stop_neighbour(pid)
    return {
        "neighbour": neighbour,
        "duration_s": w.duration_s,
        "process_cpu_s": cpu_s,
        "job_cpu_j": w.energy_by_type.get("cpu", 0.0),
        "host_cpu_j": w.host_energy_by_type.get("cpu", 0.0),
        "job_cpu_s": w.job_cpu_s,
        "busy_cpu_s": w.busy_cpu_s,
        "other_cpu_share": w.other_cpu_share,
        "note": shared_host_note(w),
        "tdp_w": sensor.tdp_w,
    }


def compare(alone: dict[str, Any], shared: dict[str, Any]) -> dict[str, float]:
    """Ratios of the two runs in each scope (larger / smaller for the job scope)."""
    a, s = alone["job_cpu_j"], shared["job_cpu_j"]
    return {
        "job_ratio": max(a, s) / min(a, s) if min(a, s) > 0 else float("inf"),
        "host_shared_over_alone": shared["host_cpu_j"] / alone["host_cpu_j"]
        if alone["host_cpu_j"] > 0
        else float("inf"),
    }


def print_table(result: dict[str, Any]) -> None:
    """The runs, both scopes, and the ratios."""
    print(
        f"cpu_tdp {result['cpu_tdp']:g} W, interval {result['interval_s']:g} s,"
        f" work {result['work']:,} iterations, {os.cpu_count()} CPUs"
    )
    print(f"{'run':<8} {'wall s':>7} {'cpu s':>6} {'job J':>8} {'host J':>8} {'others':>7}  note")
    for r in result["runs"]:
        other = r["other_cpu_share"]
        print(
            f"{'shared' if r['neighbour'] else 'alone':<8} {r['duration_s']:7.2f}"
            f" {r['process_cpu_s']:6.2f} {r['job_cpu_j']:8.2f} {r['host_cpu_j']:8.2f}"
            f" {'-' if other is None else f'{other:.0%}':>7}  {r['note'] or ''}"
        )
    for c in result["comparisons"]:
        print(
            f"job scope: larger / smaller = {c['job_ratio']:.2f}x;"
            f" host scope: shared / alone = {c['host_shared_over_alone']:.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    """Run alone, then shared, ``--repeat`` times; print both scopes."""
    parser = make_parser(__doc__)
    parser.add_argument("--work", type=int, default=30_000_000)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--cpu-tdp", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    runs, comparisons = [], []
    for _ in range(args.repeat):
        pair = [
            run(neighbour=n, work=args.work, interval_s=args.interval, cpu_tdp=args.cpu_tdp)
            for n in (False, True)
        ]
        runs += pair
        comparisons.append(compare(*pair))
    result = {
        "cpu_tdp": args.cpu_tdp,
        "interval_s": args.interval,
        "work": args.work,
        "runs": runs,
        "comparisons": comparisons,
    }
    return emit(result, args.json, print_table)


if __name__ == "__main__":
    raise SystemExit(main())
