"""How costs grow: with the number of devices (1→64 fake GPUs) and with the run's length.

Usage: ``python benchmarks/scale.py [--quick] [--json FILE]``

**Devices** (N fake GPUs + a 2-socket RAPL tree, i.e. N + 4 devices), per N:

* ``tick``: CPU µs of one ``sampler.tick()`` (reads every device, builds the snapshot);
* ``snapshot``: ns of ``monitor.snapshot()`` (what every span boundary reads);
* ``window``: µs of ``measure_window`` (the energy difference a span computes at its end);
* ``step``: µs of one optimizer step of the span layer (``Run.step``), step spans off;
* ``step span``: µs of one step with a step span (open + close, energy attributes).

The slope (µs per extra device) comes from a least-squares fit. Expected: tick and span
boundaries O(devices); snapshot O(1); a step with spans off independent of devices.

**Run length**: steps of the span layer in stretches (to 1k, 10k, 100k steps; quick: 1k, 10k,
20k), spans off and on, with the sampler ticking every 50 ms; per stretch the mean µs per step
and the Python heap growth per step (``tracemalloc``, in a separate pass so it does not slow
the timing). Expected: flat cost, ~0 bytes per step once warm (counters are integers; history
is a fixed ring; finished spans wait in the SDK's ``BatchSpanProcessor`` queue, bounded at
2048 spans, so with step spans on the heap grows until that queue is full, then stays).
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import tempfile
import time
import timeit
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import emit, make_parser
from core import discover, make_monitor
from overhead import _NullSpanExporter

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.energy_windows import measure_window
from hf_eco2ai.run import Run
from hf_eco2ai.telemetry.session import TelemetrySession

GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)


def _best_us(fn: Any, number: int, repeat: int = 5) -> float:
    """Median over ``repeat`` batches of ``number`` calls, µs per call (garbage collector on,
    as in training: spans make cyclic garbage, and its collection is part of their cost)."""
    times = timeit.repeat(fn, setup="import gc; gc.enable()", number=number, repeat=repeat)
    return statistics.median(t / number for t in times) * 1e6


def _run(monitor: EnergyMonitor, step_span_every: int) -> tuple[Run, Any]:
    """A run of the span layer on ``monitor`` with SDK providers (dropping exporter)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(_NullSpanExporter()))  # type: ignore[arg-type]
    config = CarbonConfig(step_span_every=step_span_every, write_report=False)
    session = TelemetrySession(
        config, tracer_provider=tp, meter_provider=MeterProvider(), monitor=monitor
    )
    run = Run(session, "transformers", "transformers.trainer")
    run.begin({})
    return run, tp


def devices_row(gpus: int, tmp: Path, quick: bool) -> dict[str, Any]:
    """All per-device-count costs for ``gpus`` fake GPUs."""
    loops = 200 if quick else 1000
    monitor = make_monitor(discover(gpus, tmp / f"g{gpus}", "rapl"))
    sampler = monitor.sampler
    for _ in range(20):
        sampler.tick()
    costs = []
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(loops):
            sampler.tick()
        costs.append((time.thread_time() - t0) / loops)
    tick_us = statistics.median(costs) * 1e6
    snapshot_ns = _best_us(monitor.snapshot, 100_000) * 1e3
    a, b = monitor.snapshot(), monitor.snapshot()
    window_us = _best_us(lambda: measure_window(a, a.t_ns, b, b.t_ns + 1000), 5_000)
    out: dict[str, Any] = {
        "gpus": gpus,
        "devices": len(monitor.devices),
        "tick_us": tick_us,
        "snapshot_ns": snapshot_ns,
        "window_us": window_us,
    }
    for key, every in (("step_us", 0), ("step_span_us", 1)):
        run, tp = _run(monitor, every)
        counter = iter(range(1, 10**9))

        def one(run: Run = run, counter: Any = counter) -> None:
            k = next(counter)
            run.begin_step(k)
            run.step(k, 8, 256)

        out[key] = _best_us(one, 20_000 if every == 0 else 2_000)
        run.finish({})
        run.session.close()
        tp.shutdown()
    monitor.close()
    return out


def _slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def length_rows(decades: list[int], tmp: Path) -> list[dict[str, Any]]:
    """Per-step time and heap growth per decade of steps, spans off and on."""
    rows: list[dict[str, Any]] = []
    for every in (0, 1):
        for measure_memory in (False, True):
            monitor = make_monitor(
                discover(8, tmp / f"len{every}{measure_memory}", "rapl"), interval_s=0.05
            )
            run, tp = _run(monitor, every)  # starts the sampler thread (20 Hz)
            k = 0
            start_decade = 0
            for end in decades:
                n = end - start_decade
                gc.collect()
                if measure_memory:
                    tracemalloc.start()
                    before = tracemalloc.take_snapshot()
                t0 = time.perf_counter()
                for _ in range(n):
                    k += 1
                    run.begin_step(k)
                    run.step(k, 8, 256)
                elapsed = time.perf_counter() - t0
                if measure_memory:
                    gc.collect()
                    after = tracemalloc.take_snapshot()
                    tracemalloc.stop()
                    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
                    rows_for = [
                        r for r in rows if r["step_span_every"] == every and r["steps"] == end
                    ]
                    rows_for[0]["heap_growth_bytes"] = growth
                    rows_for[0]["heap_bytes_per_step"] = growth / n
                else:
                    rows.append(
                        {
                            "step_span_every": every,
                            "steps": end,
                            "decade_steps": n,
                            "us_per_step": elapsed / n * 1e6,
                            "history_len": len(monitor.history().t_ns),
                        }
                    )
                start_decade = end
            run.finish({})
            run.session.close()
            tp.shutdown()
            monitor.close()
    return rows


def run(quick: bool) -> dict[str, Any]:
    """Both scans."""
    logging.getLogger("hf_eco2ai").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        devices = [devices_row(g, Path(tmp), quick) for g in GPU_COUNTS]
        decades = [1_000, 10_000, 20_000] if quick else [1_000, 10_000, 100_000]
        lengths = length_rows(decades, Path(tmp))
    xs = [float(r["devices"]) for r in devices]
    slopes = {
        key: _slope(xs, [float(r[key]) for r in devices])
        for key in ("tick_us", "snapshot_ns", "window_us", "step_us", "step_span_us")
    }
    return {"devices": devices, "slopes_per_device": slopes, "length": lengths}


def print_table(result: dict[str, Any]) -> None:
    """Markdown tables for docs/benchmarks.md."""
    print(
        "| GPUs | devices | tick() CPU (µs) | snapshot() (ns) | window (µs) "
        "| step, spans off (µs) | step with span (µs) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["devices"]:
        print(
            f"| {r['gpus']} | {r['devices']} | {r['tick_us']:.1f} | {r['snapshot_ns']:.0f} | "
            f"{r['window_us']:.2f} | {r['step_us']:.2f} | {r['step_span_us']:.1f} |"
        )
    s = result["slopes_per_device"]
    print(
        f"\nper extra device: tick {s['tick_us']:.2f} µs, snapshot {s['snapshot_ns']:.2f} ns, "
        f"window {s['window_us']:.3f} µs, step (spans off) {s['step_us']:.4f} µs, "
        f"step with span {s['step_span_us']:.3f} µs\n"
    )
    print(
        "| step spans | steps so far | µs per step (this stretch) "
        "| heap growth per step, this stretch (bytes) | history samples |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in result["length"]:
        print(
            f"| {'every step' if r['step_span_every'] else 'off'} | {r['steps']} | "
            f"{r['us_per_step']:.2f} | {r.get('heap_bytes_per_step', float('nan')):.3f} | "
            f"{r['history_len']} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run."""
    parser = make_parser(__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer loops; run length up to 20k steps"
    )
    ns = parser.parse_args(argv)
    result = run(ns.quick)
    return emit(result, ns.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
