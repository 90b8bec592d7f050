"""Whole-run overhead: the same tiny Trainer run, plain vs instrumented, interleaved.

Usage: ``python benchmarks/overhead.py [--pairs 7] [--train-size 512]``

Each pair runs the plain and the instrumented training back to back (alternating which goes
first), in this process, on the tiny BERT of ``examples/train_hf.py``. It prints the median wall
time of each, the median of the per-pair ratios with its min-max spread, and process CPU time.
Budget (issue 3): median ratio <= 1.02.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from train_hf import make_trainer


def timed_run(instrumented: bool, train_size: int, step_spans: int) -> tuple[float, float]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor

    inst = HFEco2AIInstrumentor()
    if instrumented:
        inst.instrument(
            tracer_provider=TracerProvider(),
            meter_provider=MeterProvider(),
            config=CarbonConfig.from_env(step_span_every=step_spans),
        )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = make_trainer(
                tmp, epochs=1, train_size=train_size, eval_size=8, logging_strategy="no"
            )
            wall0, cpu0 = time.perf_counter(), time.process_time()
            trainer.train()
            return time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        if instrumented:
            inst.uninstrument()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--step-span-every", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    ns = parser.parse_args(argv)
    logging.disable(logging.INFO)
    torch.set_num_threads(1)
    timed_run(False, 64, 0)  # warm-up: imports, allocator, kernels
    timed_run(True, 64, 0)
    plain, inst, ratios, cpu_plain, cpu_inst = [], [], [], [], []
    for k in range(ns.pairs):
        order = (False, True) if k % 2 == 0 else (True, False)
        result = {flag: timed_run(flag, ns.train_size, ns.step_span_every) for flag in order}
        plain.append(result[False][0])
        inst.append(result[True][0])
        cpu_plain.append(result[False][1])
        cpu_inst.append(result[True][1])
        ratios.append(result[True][0] / result[False][0])
    summary = {
        "pairs": ns.pairs,
        "train_size": ns.train_size,
        "step_span_every": ns.step_span_every,
        "plain_median_s": statistics.median(plain),
        "instrumented_median_s": statistics.median(inst),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "cpu_plain_median_s": statistics.median(cpu_plain),
        "cpu_instrumented_median_s": statistics.median(cpu_inst),
    }
    if ns.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"plain {summary['plain_median_s']:.3f} s, instrumented "
            f"{summary['instrumented_median_s']:.3f} s (median of {ns.pairs} interleaved pairs)\n"
            f"ratio median {summary['ratio_median']:.4f} "
            f"[min {summary['ratio_min']:.4f}, max {summary['ratio_max']:.4f}]; "
            f"CPU {summary['cpu_plain_median_s']:.3f} s vs {summary['cpu_instrumented_median_s']:.3f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
