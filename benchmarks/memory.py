"""Memory over a long run: RSS growth of the sampler and of the per-step path, with its bound.

Usage: ``python benchmarks/memory.py [--quick] [--hours 24] [--steps 100000] [--json FILE]``

Two long runs in one process, RSS (``psutil``) read after ``gc.collect()``:

* ``sampler``: a monitor with 8 fake GPUs and a RAPL tree (12 devices) and the default
  ``history_size`` (3600), ticked back to back for ``--hours`` simulated hours (3600 ticks per
  hour at the default 1 s interval). The history ring is allocated once; once it is full
  (after one simulated hour) nothing may grow.
* ``steps``: ``HFEco2AIInstrumentor`` with fake devices, its sampler thread at 20 Hz (the
  fastest it allows is 0.05 s), and ``--steps`` optimizer steps of the Trainer callback path
  (``count_batch`` + ``on_step_begin``/``on_step_end``, a log record every 10 steps, an epoch and
  an evaluation every 1000 steps) on a no-op model, with step spans off and every step
  (``BatchSpanProcessor`` + an exporter that drops spans; its queue is bounded at 2048).

Budget (issue 8): growth ≤ 20 MB, and bounded by ``history_size`` (the ring's bytes are
printed); per-run lists grow per epoch/evaluation, never per step.
"""

from __future__ import annotations

import gc
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cli import emit, make_parser
from core import discover, make_monitor

BUDGET_MB = 20.0
MB = 1024 * 1024


def rss_mb() -> float:
    """Resident set size of this process after a full collection, in MB."""
    gc.collect()
    return float(psutil.Process().memory_info().rss) / MB


def sampler_run(hours: float, history_size: int = 3600) -> dict[str, Any]:
    """Tick a 12-device monitor for ``hours`` simulated hours; RSS along the way."""
    ticks = int(hours * 3600)
    with tempfile.TemporaryDirectory() as tmp:
        monitor = make_monitor(discover(8, Path(tmp), "rapl"), history_size=history_size)
        sampler = monitor.sampler
        for _ in range(100):
            sampler.tick()
        start = rss_mb()
        marks: list[tuple[float, float]] = []
        for k in range(1, ticks + 1):
            sampler.tick()
            if k % 3600 == 0 or k == ticks:
                marks.append((k / 3600, rss_mb() - start))
        history = monitor.history()
        devices = len(monitor.devices)
        monitor.close()
    ring_bytes = history_size * (8 + 8 * devices + 8 + 8)
    full = [g for h, g in marks if h >= 1.0]
    return {
        "simulated_hours": hours,
        "ticks": ticks,
        "devices": devices,
        "history_size": history_size,
        "history_len": len(history.t_ns),
        "ring_mb": ring_bytes / MB,
        "growth_mb": marks[-1][1],
        "growth_after_ring_full_mb": (full[-1] - full[0]) if len(full) > 1 else 0.0,
        "marks": marks,
    }


def steps_run(steps: int, step_span_every: int) -> dict[str, Any]:
    """``steps`` optimizer steps of the Trainer callback path, instrumented; RSS growth."""
    import logging

    import torch
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from overhead import _NullSpanExporter
    from tests.conftest import fake_monitor
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_eco2ai import CarbonConfig, Eco2AICallback, HFEco2AIInstrumentor
    from hf_eco2ai import energy_monitor as monitor_module

    logging.getLogger("hf_eco2ai").setLevel(logging.ERROR)
    monitor_module.set_monitor_factory(fake_monitor)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_NullSpanExporter()))  # type: ignore[arg-type]
    inst = HFEco2AIInstrumentor()
    config = CarbonConfig(sample_interval=0.05, step_span_every=step_span_every, write_report=False)
    inst.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(), config=config)
    marks: list[tuple[int, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cb = Eco2AICallback(config)
            args = TrainingArguments(output_dir=tmp, report_to=[], use_cpu=True)
            state, control = TrainerState(), TrainerControl()
            batch = {"input_ids": torch.zeros(8, 32, dtype=torch.long)}
            cb.on_train_begin(args, state, control)

            def run_steps(n: int) -> None:
                for _ in range(n):
                    if state.global_step % 1000 == 0:
                        cb.on_epoch_begin(args, state, control)
                    cb.on_step_begin(args, state, control)
                    cb.count_batch(batch)
                    state.global_step += 1
                    cb.on_step_end(args, state, control)
                    if state.global_step % 10 == 0:
                        cb.on_log(args, state, control, logs={"loss": 0.5})
                    if state.global_step % 1000 == 0:
                        cb.begin_evaluate()
                        cb.on_evaluate(args, state, control, metrics={"eval_loss": 0.4})
                        cb.on_epoch_end(args, state, control)

            run_steps(1000)  # warm-up: first epoch, caches, the span queue fills
            start = rss_mb()
            chunk = max(1000, steps // 10)
            done = 0
            while done < steps:
                run_steps(chunk)
                done += chunk
                marks.append((done, rss_mb() - start))
            run = cb.run
            assert run is not None
            segments, evals = len(run.segments), len(run.eval_windows)
            monitor = run.session.monitor
            history_len = len(monitor.history().t_ns)
            ticks = monitor.sampler.ticks
            cb.on_train_end(args, state, control)
    finally:
        inst.uninstrument()
        monitor_module.set_monitor_factory(None)
        tracer_provider.shutdown()
    return {
        "steps": done,
        "step_span_every": step_span_every,
        "growth_mb": marks[-1][1],
        "growth_second_half_mb": marks[-1][1] - marks[len(marks) // 2 - 1][1],
        "segments": segments,
        "eval_windows": evals,
        "sampler_ticks": ticks,
        "history_len": history_len,
        "history_size": config.history_size,
        "marks": marks,
    }


def run(hours: float, steps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Both long runs."""
    progress(f"sampler: {hours:g} simulated hours")
    sampler = sampler_run(hours)
    progress(f"steps: {steps} steps, step spans off")
    off = steps_run(steps, 0)
    progress(f"steps: {steps} steps, step spans every step")
    on = steps_run(steps, 1)
    worst = max(sampler["growth_mb"], off["growth_mb"], on["growth_mb"])
    return {
        "sampler": sampler,
        "steps_spans_off": off,
        "steps_spans_every_step": on,
        "budget_mb": BUDGET_MB,
        "worst_growth_mb": worst,
        "budget_met": worst <= BUDGET_MB,
    }


def print_table(result: dict[str, Any]) -> None:
    """Markdown table for docs/benchmarks.md."""
    s = result["sampler"]
    print("| long run | length | RSS growth (MB) | growth, second half (MB) | bounded by |")
    print("|---|---|---:|---:|---|")
    print(
        f"| sampler, {s['devices']} devices, history_size {s['history_size']} | "
        f"{s['simulated_hours']:g} simulated h ({s['ticks']} ticks) | {s['growth_mb']:.2f} | "
        f"{s['growth_after_ring_full_mb']:.2f} (after the ring is full) | "
        f"ring {s['ring_mb']:.2f} MB, history {s['history_len']}/{s['history_size']} samples |"
    )
    for key, label in (("steps_spans_off", "spans off"), ("steps_spans_every_step", "spans on")):
        r = result[key]
        print(
            f"| Trainer callback path, step {label}, sampler at 20 Hz | {r['steps']} steps "
            f"({r['sampler_ticks']} ticks) | {r['growth_mb']:.2f} | "
            f"{r['growth_second_half_mb']:.2f} | {r['segments']} segments, "
            f"{r['eval_windows']} eval windows (per epoch/eval), history "
            f"{r['history_len']}/{r['history_size']} |"
        )
    print(
        f"\nbudget: growth ≤ {result['budget_mb']:g} MB: worst {result['worst_growth_mb']:.2f} MB "
        f"({'met' if result['budget_met'] else 'MISSED'})"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run."""
    parser = make_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="3 simulated hours, 20k steps")
    parser.add_argument("--hours", type=float, default=None, help="simulated hours (default 24)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 100k)")
    ns = parser.parse_args(argv)
    hours = ns.hours or (3.0 if ns.quick else 24.0)
    steps = ns.steps or (20_000 if ns.quick else 100_000)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = run(hours, steps, progress)
    return emit(result, ns.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
