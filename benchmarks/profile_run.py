"""Where our main-thread cost goes in one instrumented tiny Trainer run (cProfile).

Usage::

    python benchmarks/profile_run.py [--steps 2048] [--top 15]

Runs the tiny BERT of ``examples/train_hf.py`` once under ``HFEco2AIInstrumentor`` with the
defaults of the overhead benchmark (``country="FR"``, 1 s sampling, run report, an SDK span
processor feeding ``overhead.py``'s exporter that drops everything), after a warm-up run, with :mod:`cProfile` enabled on the
main thread only. It prints the time inside each of our entry points — ``instrument()``, the
Trainer callback events, the instrumentor's wrappers, the end-of-run report, ``uninstrument()``
— and the functions of ``hf_eco2ai`` that cost the most. cProfile's own overhead inflates
every call (several times over for the many tiny per-step calls), so read the shares, not the
absolute times; ``overhead.py`` and the hot-path benchmark give the real costs.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# our entry points on the training thread: (label, file suffix, function name)
ENTRY_POINTS = (
    ("set-up: instrument()", "opentelemetry/instrumentation/instrumentor.py", "instrument"),
    ("train() wrapper (whole run)", "hf_eco2ai/instrumentor.py", "_trainer_train_wrapper"),
    (
        "training_step wrapper (per step)",
        "hf_eco2ai/instrumentor.py",
        "_trainer_training_step_wrapper",
    ),
    ("on_step_begin (per step)", "integrations/transformers_callback.py", "on_step_begin"),
    ("on_step_end (per step)", "integrations/transformers_callback.py", "on_step_end"),
    ("log() wrapper", "hf_eco2ai/instrumentor.py", "_trainer_log_wrapper"),
    ("evaluate() wrapper", "hf_eco2ai/instrumentor.py", "_trainer_evaluate_wrapper"),
    ("on_train_begin", "integrations/transformers_callback.py", "on_train_begin"),
    (
        "on_train_end (spans, report files, power.png)",
        "integrations/transformers_callback.py",
        "on_train_end",
    ),
    ("  of which write_run_report", "hf_eco2ai/outputs/__init__.py", "write_run_report"),
    ("  of which print_summary", "hf_eco2ai/outputs/summary.py", "print_summary"),
    ("tear-down: uninstrument()", "opentelemetry/instrumentation/instrumentor.py", "uninstrument"),
)


def one_run(steps: int, out: str, profile: cProfile.Profile | None) -> None:
    """One instrumented run (profiled when ``profile`` is given)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from overhead import _NullSpanExporter
    from train_hf import make_trainer

    from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_NullSpanExporter()))  # type: ignore[arg-type]
    meter_provider = MeterProvider()
    config = CarbonConfig(country="FR", output_dir=str(Path(out) / "runs"))
    inst = HFEco2AIInstrumentor()
    if profile is not None:
        profile.enable()
    inst.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, config=config)
    trainer = make_trainer(out, epochs=1, train_size=steps * 8, eval_size=8, logging_strategy="no")
    trainer.train()
    inst.uninstrument()
    if profile is not None:
        profile.disable()
    tracer_provider.shutdown()
    meter_provider.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Profile one run and print our entry points and top functions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--top", type=int, default=15)
    ns = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    sys.path.insert(0, str(ROOT / "examples"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        one_run(max(64, ns.steps // 8), out, None)  # warm-up: imports, kernels, matplotlib
        profile = cProfile.Profile()
        one_run(ns.steps, out, profile)
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values())
    print(f"one instrumented Trainer run, {ns.steps} steps, main thread under cProfile")
    print(f"total profiled time (training included): {total:.3f} s\n")
    print("| our entry point | calls | cumulative (ms) | per call (µs) |")
    print("|---|---:|---:|---:|")
    for label, suffix, name in ENTRY_POINTS:
        calls = cum = 0.0
        for (path, _, func), (_, ncalls, _, ct, _) in raw.items():
            if func == name and path.replace("\\", "/").endswith(suffix):
                calls += ncalls
                cum += ct
        if calls:
            print(f"| {label} | {int(calls)} | {cum * 1e3:.1f} | {cum / calls * 1e6:.1f} |")
    ours = [
        (tt, ncalls, ct, path, line, func)
        for (path, line, func), (_, ncalls, tt, ct, _) in raw.items()
        if "/hf_eco2ai/" in path.replace("\\", "/")
    ]
    ours.sort(reverse=True)
    print(f"\nfunctions of hf_eco2ai by own time (top {ns.top}):\n")
    print("| function | calls | own time (ms) | cumulative (ms) |")
    print("|---|---:|---:|---:|")
    for tt, ncalls, ct, path, line, func in ours[: ns.top]:
        short = path.replace("\\", "/").split("/hf_eco2ai/", 1)[1]
        print(f"| `{short}:{line} {func}` | {ncalls} | {tt * 1e3:.2f} | {ct * 1e3:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
