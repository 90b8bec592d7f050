"""Idle cost of the sampler at 1 Hz, side by side with CodeCarbon and eco2ai.

Usage: ``python benchmarks/idle_cost.py [--quick] [--duration 30] [--repeats 3] [--json FILE]``;
``python benchmarks/idle_cost.py --profile 500``: what one tick of that monitor is made of
(cProfile over 500 ``sampler.tick()`` calls in a loop, warm: the thread's ticks run cold, after
a second asleep, and cost several times more, but in the same proportions roughly).
``python benchmarks/idle_cost.py --cold 30 [--bare]``: the CPU time of a tick as the sampler
thread pays it, cold, and of the wake-up apart: a thread of its own sleeps a second on a lock
(as the sampler does) then calls ``sampler.tick(idle_batching=True)`` once (as the sampler
thread does while nobody reads the ledger: the readings, and every ``IDLE_BATCH``-th tick the
commit of the batch), ``--cold`` times, reading its own CPU clock around the tick and around the
wake-up (``--bare``: wake-ups only, no tick). The figure at 1 Hz is the mean tick (commits
included) plus the median wake-up.

Each measurement runs in a fresh worker process that starts one tracker, lets it settle
(``--warmup``, 3 s: start-up is not steady state), then sleeps ``--duration`` seconds on its
main thread and reads CPU clocks before and after:

* ``hf-eco2ai``: the real discovered monitor, ``EnergyMonitor(CarbonConfig(sample_interval=1.0))``
  (production discovery; on a machine without RAPL or GPUs that is the CPU TDP model and the
  RAM model). Method ``threads``: the CPU clock of each of our threads
  (``hf-eco2ai-sampler``, ``hf-eco2ai-sampler-watchdog``: ``time.pthread_getcpuclockid``,
  ``time.clock_gettime``), summed.
* ``codecarbon``: ``OfflineEmissionsTracker(measure_power_secs=1)`` (offline: no geolocation).
* ``eco2ai``: ``eco2ai.Tracker(measure_period=1)``.

For the peers the threads to count are those that appeared after the tracker started. When
that set is the same at both ends of the window, their CPU clocks are summed (method
``threads``); when threads come and go during the window (a ``threading.Timer`` re-created each
interval, a scheduler's pool growing), a thread's clock cannot be read across the window, so
the process's CPU time is used instead: ``time.process_time()`` delta minus the main thread's
``time.thread_time()`` delta while it sleeps (method ``process``). Both figures are recorded
for every tool; the table says which one it reports.

Tools run one after the other (never at once), rotated for ``--repeats`` rounds; the table gives
the median and the range. The peers run in ``benchmarks/.venv-peers`` (built by
``bash benchmarks/setup_peers.sh``) and so does hf-eco2ai when that venv exists (same
interpreter for all), with this checkout's ``src`` first on ``PYTHONPATH``. Network access
other than loopback is refused inside the workers.

Target (issue 13): hf-eco2ai ≤ 0.05 % of one core at 1 Hz while idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import emit, make_parser

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEERS_PYTHON = BENCH_DIR / ".venv-peers" / "bin" / "python"
PEERS_READY = BENCH_DIR / ".venv-peers" / ".installed"
RESULT_MARK = "@@RESULT "
TOOLS = ("hf-eco2ai", "codecarbon", "eco2ai")
PEERS = ("codecarbon", "eco2ai")
OUR_THREADS = ("hf-eco2ai-sampler", "hf-eco2ai-sampler-watchdog")
TARGET_PCT = 0.05


# ============================================================================ worker side
def _thread_clocks(idents: dict[int, str]) -> dict[int, float]:
    """CPU seconds of each live thread in ``idents`` (threads that have ended are left out)."""
    out = {}
    for ident in idents:
        with contextlib.suppress(OSError):  # the thread ended
            out[ident] = time.clock_gettime(time.pthread_getcpuclockid(ident))
    return out


def _start_tool(tool: str, workdir: Path) -> tuple[Callable[[], None], str]:
    """Start ``tool`` idle at 1 Hz; its stop function and a description of what ran."""
    if tool == "hf-eco2ai":
        from hf_eco2ai.config import CarbonConfig
        from hf_eco2ai.energy_monitor import EnergyMonitor

        monitor = EnergyMonitor(CarbonConfig(sample_interval=1.0))
        monitor.start()
        methods = sorted({d.method.value for d in monitor.devices})
        return monitor.close, f"EnergyMonitor, discovered devices: {', '.join(methods)}"
    if tool == "codecarbon":
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA",
            measure_power_secs=1,
            output_dir=str(workdir),
            log_level="error",
            allow_multiple_runs=True,
        )
        tracker.start()
        return tracker.stop, "OfflineEmissionsTracker(measure_power_secs=1)"
    if tool == "eco2ai":
        import eco2ai

        tracker = eco2ai.Tracker(
            project_name="idle",
            experiment_description="idle cost",
            file_name=str(workdir / "eco2ai_emission.csv"),
            measure_period=1,
            alpha_2_code="FR",
            ignore_warnings=True,
        )
        tracker.start()
        return tracker.stop, "eco2ai.Tracker(measure_period=1)"
    raise ValueError(f"unknown tool {tool!r}; allowed: {', '.join(TOOLS)}")


def worker(tool: str, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """Start ``tool``, settle, and measure its CPU over ``duration_s`` while the main thread sleeps."""
    from overhead import block_network

    block_network()
    main = threading.main_thread()
    before = set(threading.enumerate())
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # whatever a tracker writes in the working directory lands here
        stop, what = _start_tool(tool, Path(tmp))
        time.sleep(warmup_s)
        if tool == "hf-eco2ai":
            threads = [t for t in threading.enumerate() if t.name in OUR_THREADS]
        else:
            threads = [t for t in threading.enumerate() if t not in before]
        threads = [t for t in threads if t.ident is not None]
        ours = {t.ident: t.name for t in threads if t.ident is not None}
        clocks0 = _thread_clocks(ours)
        p0, m0, w0 = time.process_time(), time.thread_time(), time.monotonic()
        time.sleep(duration_s)
        p1, m1, w1 = time.process_time(), time.thread_time(), time.monotonic()
        clocks1 = _thread_clocks(ours)
        # Thread objects, not idents: a thread that ended and a new one (a threading.Timer per
        # interval) may share an ident, and the clock read would then be the new thread's
        alive = [t.is_alive() for t in threads]
        after = [t for t in threading.enumerate() if t is not main]
        stop()
        os.chdir(ROOT)
    elapsed = w1 - w0
    new_at_end = {t.ident: t.name for t in after if t not in before and t not in threads}
    if tool == "hf-eco2ai":
        new_at_end = {k: v for k, v in new_at_end.items() if v in OUR_THREADS}
    gone = {t.ident for t, up in zip(threads, alive, strict=True) if not up}
    clocks1 = {k: v for k, v in clocks1.items() if k not in gone}
    stable = set(clocks0) == set(clocks1) and not new_at_end
    per_thread: dict[str, float] = {}
    for ident, cpu0 in clocks0.items():
        if ident in clocks1:
            name = ours[ident]
            per_thread[name] = per_thread.get(name, 0.0) + clocks1[ident] - cpu0
    threads_cpu = sum(per_thread.values())
    process_cpu = (p1 - p0) - (m1 - m0)
    method = "threads" if stable else "process"
    cpu = threads_cpu if stable else process_cpu
    return {
        "tool": tool,
        "what": what,
        "duration_s": elapsed,
        "method": method,
        "pct_of_core": cpu / elapsed * 100,
        "threads_pct": threads_cpu / elapsed * 100 if stable else None,
        "process_pct": process_cpu / elapsed * 100,
        "per_thread_pct": {k: v / elapsed * 100 for k, v in per_thread.items()} if stable else {},
        "threads_at_start": sorted(set(ours.values())),
        "threads_new_during_window": sorted(set(new_at_end.values())),
        "threads_gone_during_window": sorted({ours[k] for k in clocks0 if k not in clocks1}),
        "main_thread_cpu_s": m1 - m0,
    }


def profile_ticks(ticks: int, top: int) -> None:
    """cProfile of ``ticks`` calls of the real monitor's ``sampler.tick()`` (warm, in a loop),
    after the CPU time per tick (``time.thread_time``) without the profiler."""
    import cProfile
    import logging
    import pstats

    from hf_eco2ai.config import CarbonConfig
    from hf_eco2ai.energy_monitor import EnergyMonitor

    logging.getLogger("hf_eco2ai").setLevel(logging.ERROR)
    monitor = EnergyMonitor(CarbonConfig(sample_interval=1.0))
    sampler = monitor.sampler
    for _ in range(20):
        sampler.tick()
    t0 = time.thread_time()
    for _ in range(ticks):
        sampler.tick()
    per_tick = (time.thread_time() - t0) / ticks
    print(f"tick() in a loop: {per_tick * 1e6:.1f} µs CPU per tick ({ticks} ticks, no profiler)")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(ticks):
        sampler.tick()
    profiler.disable()
    monitor.close()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def cold_ticks(ticks: int, *, bare: bool, interval_s: float = 1.0) -> dict[str, Any]:
    """CPU µs of each tick and of each wake-up, on a thread that sleeps ``interval_s`` between
    ticks on a lock with a timeout, as the sampler thread does (the sampler's own thread is
    not started: the monitor is built but not started)."""
    import logging

    from hf_eco2ai.config import CarbonConfig
    from hf_eco2ai.energy_monitor import EnergyMonitor

    logging.getLogger("hf_eco2ai").setLevel(logging.ERROR)
    monitor = EnergyMonitor(CarbonConfig(sample_interval=interval_s))
    sampler = monitor.sampler
    sampler.tick()  # the baseline reading
    tick_us: list[float] = []
    wake_us: list[float] = []

    def body() -> None:
        cpu = time.thread_time_ns
        lock = threading.Lock()
        lock.acquire()
        for _ in range(ticks):
            w0 = cpu()
            lock.acquire(True, interval_s)
            w1 = cpu()
            if not bare:
                sampler.tick(idle_batching=True)  # as the thread ticks: nobody reads here
            t1 = cpu()
            wake_us.append((w1 - w0) / 1e3)
            tick_us.append((t1 - w1) / 1e3)

    thread = threading.Thread(target=body, name="cold-ticks")
    thread.start()
    thread.join()
    monitor.close()
    med_tick = statistics.median(tick_us)
    med_wake = statistics.median(wake_us)
    mean_tick = statistics.fmean(tick_us)
    return {
        "ticks": ticks,
        "bare": bare,
        "tick_us_mean": mean_tick,
        "tick_us_median": med_tick,
        "tick_us_range": (min(tick_us), max(tick_us)),
        "wake_us_median": med_wake,
        "wake_us_range": (min(wake_us), max(wake_us)),
        "pct_of_core_at_1hz": (mean_tick + med_wake) / 1e6 / interval_s * 100,
    }


def print_cold(result: dict[str, Any]) -> None:
    """One line per figure."""
    print(
        f"{result['ticks']} cold {'wake-ups (no tick)' if result['bare'] else 'ticks'}:"
        f" tick {result['tick_us_median']:.1f} µs median"
        f" ({result['tick_us_range'][0]:.1f}–{result['tick_us_range'][1]:.1f};"
        f" mean {result['tick_us_mean']:.1f}, with the batched commits),"
        f" wake-up {result['wake_us_median']:.1f} µs median"
        f" ({result['wake_us_range'][0]:.1f}–{result['wake_us_range'][1]:.1f});"
        f" together {result['pct_of_core_at_1hz']:.4f} % of one core at 1 Hz"
    )


# ============================================================================ parent side
def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        return "n/a"


def run_worker(python: str, tool: str, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """One measurement in a fresh process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(BENCH_DIR), *filter(None, [env.get("PYTHONPATH")])]
    )
    cmd = [python, str(Path(__file__).resolve()), "--worker", tool]
    cmd += ["--duration", str(duration_s), "--warmup", str(warmup_s)]
    load0 = _loadavg()
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration_s + warmup_s + 300
    )
    load1 = _loadavg()
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            result["load_before"], result["load_after"] = load0, load1
            return result
    raise RuntimeError(
        f"{tool} worker failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    )


def run(
    tools: list[str],
    python: str,
    duration_s: float,
    warmup_s: float,
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Every tool ``repeats`` times, rotated; the runs and a summary per tool."""
    runs: list[dict[str, Any]] = []
    for r in range(repeats):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for tool in order:
            result = run_worker(python, tool, duration_s, warmup_s)
            progress(
                f"round {r + 1}/{repeats} {tool}: {result['pct_of_core']:.4f} % "
                f"({result['method']}), load {result['load_before']}"
            )
            runs.append(result)
    summary = {}
    for tool in tools:
        mine = [x for x in runs if x["tool"] == tool]
        pcts = [x["pct_of_core"] for x in mine]
        names = sorted({n for x in mine for n in x["per_thread_pct"]})
        summary[tool] = {
            "what": mine[0]["what"],
            "methods": sorted({x["method"] for x in mine}),
            "median_pct": statistics.median(pcts),
            "min_pct": min(pcts),
            "max_pct": max(pcts),
            "median_process_pct": statistics.median(x["process_pct"] for x in mine),
            "per_thread_median_pct": {
                n: statistics.median(x["per_thread_pct"].get(n, 0.0) for x in mine) for n in names
            },
        }
    return {
        "command": " ".join(["python", "benchmarks/idle_cost.py", *sys.argv[1:]]),
        "python": python,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "runs": runs,
        "summary": summary,
        "target_pct": TARGET_PCT,
    }


def print_table(result: dict[str, Any]) -> None:
    """Markdown table for docs/benchmarks.md."""
    loads = [x["load_before"].split()[0] for x in result["runs"]]
    loads += [x["load_after"].split()[0] for x in result["runs"]]
    print(
        f"idle at 1 Hz, {result['duration_s']:g} s per measurement after {result['warmup_s']:g} s "
        f"warm-up, {result['repeats']} rounds, {result['cpus']} CPUs, "
        f"1-min load average {min(loads)}–{max(loads)}\n"
    )
    print("| tracker | what ran | method | % of one core, median | range | process − main |")
    print("|---|---|---|---:|---:|---:|")
    for tool, s in result["summary"].items():
        print(
            f"| {tool} | {s['what']} | {'/'.join(s['methods'])} | **{s['median_pct']:.4f}** | "
            f"{s['min_pct']:.4f}–{s['max_pct']:.4f} | {s['median_process_pct']:.4f} |"
        )
    for tool, s in result["summary"].items():
        if s["per_thread_median_pct"]:
            parts = ", ".join(f"{n} {v:.4f} %" for n, v in s["per_thread_median_pct"].items())
            print(f"\n{tool} per thread (median): {parts}")
    ours = result["summary"].get("hf-eco2ai")
    if ours is not None:
        met = ours["median_pct"] <= result["target_pct"]
        print(
            f"\ntarget: hf-eco2ai ≤ {result['target_pct']} % of one core: median "
            f"{ours['median_pct']:.4f} % ({'met' if met else 'MISSED'})"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run the workers (or be one)."""
    parser = make_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="5 s per measurement, 1 round")
    parser.add_argument("--duration", type=float, default=None, help="window (s; default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="settling time (s)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 3)")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}"
    )
    parser.add_argument("--python", default=None, help="workers' interpreter (default: peers venv)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="only profile N ticks (cProfile)"
    )
    parser.add_argument(
        "--cold", type=int, default=0, metavar="N", help="only time N cold ticks and wake-ups"
    )
    parser.add_argument("--bare", action="store_true", help="with --cold: wake-ups only")
    parser.add_argument("--worker", default=None, help=argparse_hidden())
    ns = parser.parse_args(argv)
    if ns.profile:
        profile_ticks(ns.profile, 30)
        return 0
    if ns.cold:
        return emit(cold_ticks(ns.cold, bare=ns.bare), ns.json, print_cold)
    duration = ns.duration or (5.0 if ns.quick else 30.0)
    if ns.worker is not None:
        print(RESULT_MARK + json.dumps(worker(ns.worker, duration, ns.warmup)), flush=True)
        return 0
    repeats = ns.repeats or (1 if ns.quick else 3)
    tools = [t.strip() for t in ns.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error(f"--tools: unknown {', '.join(unknown)}; allowed: {', '.join(TOOLS)}")
    python = ns.python
    if python is None:
        if PEERS_READY.exists():
            python = str(PEERS_PYTHON)
        else:
            python = sys.executable
            if any(t in PEERS for t in tools):
                print(
                    "note: benchmarks/.venv-peers not found (run `bash benchmarks/setup_peers.sh`);"
                    " measuring hf-eco2ai only",
                    file=sys.stderr,
                )
                tools = [t for t in tools if t not in PEERS]

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = run(tools, python, duration, ns.warmup, repeats, progress)
    return emit(result, ns.json, print_table)


def argparse_hidden() -> str:
    """Help text that hides the internal ``--worker`` option."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
