"""Whole-run overhead, side by side with eco2ai and CodeCarbon: the same tiny runs, interleaved.

Usage::

    bash benchmarks/setup_peers.sh                 # once: eco2ai + CodeCarbon venv (see there)
    python benchmarks/overhead.py [--quick] [--json FILE] [--frameworks trainer,lightning]

Variants (each one run of the same tiny training):

* ``plain``: no tracker (the reference, run in every tool's worker, paired);
* ``hf-eco2ai``: ``HFEco2AIInstrumentor().instrument()`` with the defaults (country set, 1 s
  sampling, run report written), SDK providers with a no-op exporter behind a
  ``BatchSpanProcessor`` and a ``PeriodicExportingMetricReader`` (so spans are processed and the
  observable callbacks are collected, as with a real exporter);
* ``hf-eco2ai-steps``: the same with a step span every step (``step_span_every=1``);
* ``hf-eco2ai-noreport`` (not run by default): the defaults without the end-of-run report
  (``write_report=False``: no report.json / emissions.csv / power.png), to show what it costs;
* ``eco2ai``: ``eco2ai.Tracker(measure_period=1, alpha_2_code="FR")`` ``start()`` / ``stop()``;
* ``codecarbon``: ``OfflineEmissionsTracker(measure_power_secs=1, country_iso_code="FRA")``.

Runs: the tiny BERT of ``examples/train_hf.py`` under ``transformers.Trainer``
(``make_trainer``) and under Lightning (``benchmarks/tiny_lightning.py``), one thread for torch.

How (and why this way): every tool lives in its **own worker process** (started once, kept
for the whole benchmark), and the parent drives them in **interleaved rounds**: in each round
every worker, one at a time in a rotated order, runs a **pair** back to back: one plain run
(no tracker) and one run with its tool, the tool first in every other pair (ABBA), and the
pair's ratio tool/plain is taken. Pairing inside one process, seconds apart, is what makes a
1 % difference measurable on a shared virtual machine: there, the same plain run drifts by
20-25 % over minutes, while two adjacent plain runs of the same process differ by ~2.6 %
(standard deviation of their ratio). Separate processes per tool, because the tools keep
process-wide state that must not meet: our Trainer patches and shared sampler, eco2ai's
APScheduler and pandas-written CSV, CodeCarbon's scheduler and logger (a tool that leaves a
thread behind after ``stop()`` charges it to its own plain runs, in its favour). Long-lived
workers, because starting Python + torch + transformers costs seconds, which would dwarf what
is measured; a discarded warm-up pair takes every one-time cost (imports, kernels, lazy imports
inside the tools) out of the rounds. All workers run the same interpreter and packages: the
peers' venv when it exists (it has hf-eco2ai installed in editable mode too), else this
interpreter with the peers left out.

Each worker times, in one window: tracker set-up (instrument / construct + start), building
the trainer, training, tracker tear-down (uninstrument / stop, report writing). The window's
wall time and process CPU time (all threads, so sampler and scheduler threads are included)
are reported; the table gives the median of the pairs' ratios, their min-max, and a bootstrap
95 % interval of that median. What a tool leaves running after the window (our power.png
thread) is waited for after it, and its CPU reported in its own column. The network is blocked
inside every worker (only loopback and Unix sockets connect), so a tool that tries to geolocate
fails fast instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from _cli import emit, make_parser

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEERS_READY = PEERS_VENV / ".installed"  # written by setup_peers.sh once everything installed
RESULT_MARK = "@@RESULT "

VARIANTS = ("plain", "hf-eco2ai", "hf-eco2ai-steps", "hf-eco2ai-noreport", "eco2ai", "codecarbon")
PEERS = ("eco2ai", "codecarbon")
DEFAULT_TOOLS = ("hf-eco2ai", "hf-eco2ai-steps", "eco2ai", "codecarbon")
FRAMEWORKS = ("trainer", "lightning")
INTERVAL_S = 1.0
BUDGET_RATIO = 1.01


# ============================================================================ worker side
def block_network() -> None:
    """Refuse every non-loopback connection and name lookup in this process (no hangs)."""
    import socket

    allowed = ("localhost", "127.", "::1", "0.0.0.0")

    def is_local(address: Any) -> bool:
        if isinstance(address, (str, bytes)):  # AF_UNIX path
            return True
        host = str(address[0]) if address else ""
        return host.startswith(allowed)

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if not is_local(address):
            raise ConnectionRefusedError(f"network blocked by the benchmark: {address!r}")
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not is_local(address):
            raise ConnectionRefusedError(f"network blocked by the benchmark: {address!r}")
        return original_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_local((host,)):
            raise socket.gaierror(f"network blocked by the benchmark: {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


class _NullSpanExporter:
    """A span exporter that drops everything (the SDK still builds and batches the spans)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered."""
        return True


def _null_metric_exporter() -> Any:
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class NullMetricExporter(MetricExporter):
        """Drops every batch after the SDK collected it (observable callbacks did run)."""

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    return NullMetricExporter()


@dataclass
class Job:
    """One run for a worker."""

    framework: str
    train_size: int
    export_interval_s: float
    plain: bool = False  # the reference run, without the worker's tracker


class Tracker:
    """Start/stop of one variant's tracker around a run (``plain``: nothing)."""

    def __init__(self, variant: str, workdir: Path, export_interval_s: float) -> None:
        self.variant = variant
        self.workdir = workdir
        self.export_interval_s = export_interval_s
        self._inst: Any = None
        self._peer: Any = None
        self._providers: tuple[Any, Any] | None = None
        self.energy_kwh: float | None = None

    def providers(self) -> None:
        """OTel SDK providers for our variants, built outside the timed window."""
        if not self.variant.startswith("hf-eco2ai"):
            return
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(_NullSpanExporter()))  # type: ignore[arg-type]
        reader = PeriodicExportingMetricReader(
            _null_metric_exporter(), export_interval_millis=self.export_interval_s * 1000
        )
        self._providers = (tp, MeterProvider(metric_readers=[reader]))

    def shutdown_providers(self) -> None:
        """Flush and stop the SDK providers (outside the timed window)."""
        if self._providers is not None:
            for provider in self._providers:
                provider.shutdown()
            self._providers = None

    def start(self) -> None:
        """Set up and start the tracker (timed)."""
        if self.variant.startswith("hf-eco2ai"):
            from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor

            assert self._providers is not None
            config = CarbonConfig(
                country="FR",
                sample_interval=INTERVAL_S,
                step_span_every=1 if self.variant == "hf-eco2ai-steps" else 0,
                write_report=self.variant != "hf-eco2ai-noreport",
            )
            self._inst = HFEco2AIInstrumentor()
            self._inst.instrument(
                tracer_provider=self._providers[0],
                meter_provider=self._providers[1],
                config=config,
            )
        elif self.variant == "eco2ai":
            import eco2ai

            self._peer = eco2ai.Tracker(
                project_name="bench",
                experiment_description="overhead",
                file_name=str(self.workdir / "eco2ai_emission.csv"),
                measure_period=INTERVAL_S,
                alpha_2_code="FR",
                ignore_warnings=True,
            )
            self._peer.start()
        elif self.variant == "codecarbon":
            from codecarbon import OfflineEmissionsTracker

            self._peer = OfflineEmissionsTracker(
                country_iso_code="FRA",
                measure_power_secs=INTERVAL_S,
                output_dir=str(self.workdir),
                log_level="error",
                allow_multiple_runs=True,
            )
            self._peer.start()

    def stop(self) -> None:
        """Stop the tracker and let it write its outputs (timed)."""
        if self._inst is not None:
            self._inst.uninstrument()
            self._inst = None
        elif self._peer is not None:
            self._peer.stop()
            if self.variant == "codecarbon":
                data = getattr(self._peer, "final_emissions_data", None)
                self.energy_kwh = getattr(data, "energy_consumed", None)
            self._peer = None


class ReportTimer:
    """Times ``hf_eco2ai.outputs.write_run_report`` on the training thread.

    The run report is written inside ``trainer.train()`` / ``fit()`` (at train end), so its cost
    is part of the training window; this shows how much of it: report.json, emissions.csv and
    power.png (drawn inline, on the training thread, when matplotlib is installed).
    """

    def __init__(self) -> None:
        from hf_eco2ai import outputs as report

        self.total_s = 0.0
        self._module = report
        self._original = report.write_run_report

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.total_s += time.perf_counter() - t0

        report.write_run_report = timed

    def restore(self) -> None:
        """Put the original function back."""
        self._module.write_run_report = self._original


def _attached_callback(trainer: Any) -> Any:
    """The callback the instrumentor attached to a Trainer: it keeps it out of the Trainer's
    list (issue 13 §7) and forgets it at ``uninstrument()``, so read it before stopping."""
    from hf_eco2ai.instrumentor import measuring_callback

    return measuring_callback(trainer)


def _our_energy_kwh(trainer: Any, attached: Any = None) -> float | None:
    """Energy our callback measured for the run (best effort, for the sanity column)."""
    callbacks = list(getattr(trainer, "callbacks", []) or [])
    handler = getattr(trainer, "callback_handler", None)
    callbacks += list(getattr(handler, "callbacks", []) or [])
    if attached is not None:
        callbacks.append(attached)
    for cb in callbacks:
        run = getattr(cb, "run", None)
        window = getattr(run, "last_window", None)
        if window is not None:
            return float(window.energy_j) / 3.6e6
    return None


def _eco2ai_energy_kwh(workdir: Path) -> float | None:
    import csv

    path = workdir / "eco2ai_emission.csv"
    try:
        with path.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return float(rows[-1]["power_consumption(kWh)"])
    except Exception:
        return None


def run_job(variant: str, job: Job, workdir: Path) -> dict[str, Any]:
    """One timed run of ``variant`` (in a worker)."""
    import gc

    tracker = Tracker(variant, workdir, job.export_interval_s)
    tracker.providers()
    report_timer = ReportTimer() if variant.startswith("hf-eco2ai") else None
    gc.collect()
    trainer: Any = None
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        threads_before = threading.active_count()
        main0 = time.thread_time()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        tracker.start()
        wall1, cpu1 = time.perf_counter(), time.process_time()
        if job.framework == "trainer":
            from train_hf import make_trainer

            trainer = make_trainer(
                out, epochs=1, train_size=job.train_size, eval_size=8, logging_strategy="no"
            )
            wall2, cpu2 = time.perf_counter(), time.process_time()
            trainer.train()
        else:
            from tiny_lightning import make_lightning

            trainer, module, train, val = make_lightning(job.train_size, default_root_dir=out)
            wall2, cpu2 = time.perf_counter(), time.process_time()
            trainer.fit(module, train, val)
        wall3, cpu3 = time.perf_counter(), time.process_time()
        attached = _attached_callback(trainer) if variant.startswith("hf-eco2ai") else None
        tracker.stop()
        wall4, cpu4 = time.perf_counter(), time.process_time()
        main4 = time.thread_time()
        # power.png is drawn inline at train end, inside the window: nothing is left after it
        wall5, cpu5 = time.perf_counter(), time.process_time()
        wall6, cpu6 = time.perf_counter(), time.process_time()
        threads_after = threading.active_count()
    tracker.shutdown_providers()
    if report_timer is not None:
        report_timer.restore()
    energy = tracker.energy_kwh
    if variant.startswith("hf-eco2ai"):
        energy = _our_energy_kwh(trainer, attached)
    elif variant == "eco2ai":
        energy = _eco2ai_energy_kwh(workdir)
    return {
        "variant": variant,
        "framework": job.framework,
        "train_size": job.train_size,
        "wall_s": wall4 - wall0,
        "cpu_s": cpu4 - cpu0,
        "setup_s": wall1 - wall0,
        "build_s": wall2 - wall1,
        "train_s": wall3 - wall2,
        "teardown_s": wall4 - wall3,
        "setup_cpu_s": cpu1 - cpu0,
        "train_cpu_s": cpu3 - cpu2,
        "teardown_cpu_s": cpu4 - cpu3,
        "main_cpu_s": main4 - main0,
        "background_cpu_s": max(0.0, (cpu4 - cpu0) - (main4 - main0)),
        "report_s": report_timer.total_s if report_timer is not None else None,
        "after_wall_s": wall6 - wall5,
        "after_cpu_s": cpu6 - cpu5,
        "threads_left": threads_after - threads_before,
        "energy_kwh": energy,
    }


def worker(variant: str, threads: int) -> int:
    """Serve jobs read from stdin as JSON lines; answer ``RESULT_MARK + json`` on stdout."""
    import logging
    import warnings

    block_network()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    sys.path.insert(0, str(ROOT / "examples"))
    sys.path.insert(0, str(BENCH_DIR))
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if variant == "eco2ai":
        import eco2ai  # noqa: F401
    elif variant == "codecarbon":
        import codecarbon  # noqa: F401
    elif variant.startswith("hf-eco2ai"):
        import opentelemetry.sdk.metrics
        import opentelemetry.sdk.trace  # noqa: F401

        import hf_eco2ai  # noqa: F401
    import_s = time.perf_counter() - t0
    import lightning.pytorch  # noqa: F401  (every worker imports both frameworks)
    import transformers  # noqa: F401

    workdir = Path.cwd()
    print(RESULT_MARK + json.dumps({"ready": variant, "import_s": import_s}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            job = Job(
                cmd["framework"],
                cmd["train_size"],
                cmd["export_interval_s"],
                cmd.get("plain", False),
            )
            result = run_job("plain" if job.plain else variant, job, workdir)
        except Exception as exc:
            result = {"variant": variant, "error": f"{type(exc).__name__}: {exc}"}
        print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# ============================================================================ parent side
class Worker:
    """A worker process for one variant (stdin: jobs; stdout: results; stderr: a log file)."""

    def __init__(self, variant: str, python: str, threads: int, workdir: Path) -> None:
        self.variant = variant
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "worker.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        env = dict(os.environ)
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONWARNINGS": "ignore",
                "CODECARBON_LOG_LEVEL": "error",
                "OMP_NUM_THREADS": str(threads),
            }
        )
        for key in [k for k in env if k.startswith(("OTEL_", "HF_ECO2AI_"))]:
            del env[key]  # no exporter or config leaks in from the caller's shell
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", variant, "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=workdir,
            env=env,
            text=True,
            bufsize=1,
        )
        self.import_s: float | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name=f"read-{variant}", daemon=True).start()

    def _pump(self) -> None:
        """Move the worker's stdout into a queue (so waiting for an answer can time out)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _answer(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                break
            if line.startswith(RESULT_MARK):
                answer: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
                return answer
            self._log.write(line)
        self.proc.kill()
        raise RuntimeError(
            f"worker {self.variant} gave no answer (exit {self.proc.poll()}); see {self.log_path}"
        )

    def ready(self, timeout_s: float = 300.0) -> None:
        """Wait for the worker's imports."""
        self.import_s = self._answer(timeout_s).get("import_s")

    def run(self, job: Job, timeout_s: float = 600.0) -> dict[str, Any]:
        """Run one job and return its result."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job.__dict__) + "\n")
        self.proc.stdin.flush()
        return self._answer(timeout_s)

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
        self._log.close()


@dataclass
class Row:
    """Results of one (framework, variant) over the measured rounds."""

    framework: str
    variant: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    plain_runs: list[dict[str, Any]] = field(default_factory=list)  # same worker, paired
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Medians and spreads."""

        def med(key: str) -> float:
            return float(statistics.median(r[key] for r in self.runs))

        energies = [r["energy_kwh"] for r in self.runs if r.get("energy_kwh") is not None]
        out: dict[str, Any] = {
            "framework": self.framework,
            "variant": self.variant,
            "rounds": len(self.runs),
            "wall_median_s": med("wall_s"),
            "plain_wall_median_s": (
                statistics.median(r["wall_s"] for r in self.plain_runs) if self.plain_runs else None
            ),
            "cpu_median_s": med("cpu_s"),
            "setup_median_s": med("setup_s"),
            "train_median_s": med("train_s"),
            "teardown_median_s": med("teardown_s"),
            "threads_left_max": max(r["threads_left"] for r in self.runs),
            "main_cpu_median_s": med("main_cpu_s"),
            "background_cpu_median_s": med("background_cpu_s"),
            "after_cpu_median_s": med("after_cpu_s"),
            "report_median_s": (
                statistics.median(r["report_s"] for r in self.runs)
                if self.runs[0].get("report_s") is not None
                else None
            ),
            "energy_median_kwh": statistics.median(energies) if energies else None,
        }
        if self.ratios:
            low, high = median_ci(self.ratios)
            out.update(
                ratio_median=statistics.median(self.ratios),
                ratio_min=min(self.ratios),
                ratio_max=max(self.ratios),
                ratio_ci_low=low,
                ratio_ci_high=high,
                cpu_ratio_median=statistics.median(self.cpu_ratios),
            )
        return out


def median_ci(values: Sequence[float], resamples: int = 4000) -> tuple[float, float]:
    """95 % bootstrap interval of the median (percentile method, fixed seed: reproducible)."""
    import random

    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def _rotations(items: Sequence[str], rounds: int) -> Iterator[list[str]]:
    """Round r runs the variants rotated by r, reversed every other round."""
    n = len(items)
    for r in range(rounds):
        order = [items[(r + k) % n] for k in range(n)]
        yield order if r % 2 == 0 else order[::-1]


def run_benchmark(
    variants: Sequence[str],
    frameworks: Sequence[str],
    rounds: int,
    train_size: int,
    python: str,
    threads: int,
    export_interval_s: float,
    keep_dir: Path | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Start one worker per tool, warm them up, run the interleaved rounds of paired runs."""
    machine = machine_facts(python)
    tools = [v for v in variants if v != "plain"]
    base = keep_dir or Path(tempfile.mkdtemp(prefix="hf-eco2ai-overhead-"))
    workers = {v: Worker(v, python, threads, base / v) for v in tools}
    try:
        for w in workers.values():
            w.ready()
        rows = {(f, v): Row(f, v) for f in frameworks for v in tools}
        for framework in frameworks:
            warm = Job(framework, max(256, train_size // 8), export_interval_s)
            for v in tools:  # warm-up: imports, kernels, lazy imports in the tools
                for plain in (True, False):
                    result = workers[v].run(Job(**{**warm.__dict__, "plain": plain}))
                    if "error" in result:
                        raise RuntimeError(f"{v} failed in warm-up: {result['error']}")
            for r, order in enumerate(_rotations(tools, rounds)):
                walls = []
                for k, v in enumerate(order):
                    row = rows[(framework, v)]
                    # a pair in the same worker, back to back; ABBA: who goes first alternates
                    pair = {}
                    for plain in (True, False) if (r + k) % 2 == 0 else (False, True):
                        job = Job(framework, train_size, export_interval_s, plain)
                        result = workers[v].run(job)
                        if "error" in result:
                            raise RuntimeError(f"{v} failed: {result['error']}")
                        pair[plain] = result
                    row.runs.append(pair[False])
                    row.plain_runs.append(pair[True])
                    row.ratios.append(pair[False]["wall_s"] / pair[True]["wall_s"])
                    row.cpu_ratios.append(pair[False]["cpu_s"] / pair[True]["cpu_s"])
                    walls.append(f"{v} {pair[False]['wall_s']:.3f}s/{pair[True]['wall_s']:.3f}s")
                progress(f"{framework} round {r + 1}/{rounds} (tool/plain): " + ", ".join(walls))
        imports = {v: w.import_s for v, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
        if keep_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return {
        "machine": machine,
        "settings": {
            "rounds": rounds,
            "train_size": train_size,
            "steps": train_size // 8,
            "torch_threads": threads,
            "interval_s": INTERVAL_S,
            "export_interval_s": export_interval_s,
            "python": python,
        },
        "import_s": imports,
        "rows": [rows[k].summary() for k in rows],
        "runs": {f"{f}/{v}": rows[(f, v)].runs for f, v in rows},
        "plain_runs": {f"{f}/{v}": rows[(f, v)].plain_runs for f, v in rows},
    }


def machine_facts(python: str) -> dict[str, Any]:
    """CPU count, load, versions of the tools in the workers' interpreter."""
    script = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        "for n in ('torch','transformers','lightning','eco2ai','codecarbon','hf-eco2ai',"
        "'opentelemetry-sdk','pandas'):\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        versions = json.loads(
            subprocess.run(
                [python, "-c", script], capture_output=True, text=True, check=True, timeout=60
            ).stdout
        )
    except Exception:
        versions = {}
    return {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "versions": versions,
    }


def print_table(result: dict[str, Any], out: IO[str]) -> None:
    """The Markdown tables docs/benchmarks.md shows."""
    s = result["settings"]
    out.write(
        f"{s['steps']} optimizer steps per run, {s['rounds']} interleaved rounds of paired runs, "
        f"torch threads {s['torch_threads']}, sampling every {s['interval_s']:g} s\n\n"
    )
    out.write(
        "| run | variant | wall median (s) | paired plain median (s) | "
        "ratio to plain, median [min–max] | 95 % CI of the median | CPU ratio, median |\n"
        "|---|---|---:|---:|---|---|---:|\n"
    )
    for row in result["rows"]:
        ratio = f"{row['ratio_median']:.4f} [{row['ratio_min']:.4f}–{row['ratio_max']:.4f}]"
        ci = f"{row['ratio_ci_low']:.4f}–{row['ratio_ci_high']:.4f}"
        out.write(
            f"| {row['framework']} | {row['variant']} | {row['wall_median_s']:.3f} | "
            f"{row['plain_wall_median_s']:.3f} | {ratio} | {ci} | "
            f"{row['cpu_ratio_median']:.4f} |\n"
        )
    out.write(
        "\nDirect costs (medians; measured inside each run, so training-time noise does not "
        "enter):\n\n"
        "| run | variant | set-up (ms) | tear-down (ms) | run report (ms) | "
        "background threads CPU (ms) | after the window, CPU (ms) | threads left | "
        "energy seen (kWh) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    for row in result["rows"]:
        energy = row["energy_median_kwh"]
        report = row.get("report_median_s")
        out.write(
            f"| {row['framework']} | {row['variant']} | {row['setup_median_s'] * 1e3:.1f} | "
            f"{row['teardown_median_s'] * 1e3:.1f} | "
            f"{'—' if report is None else f'{report * 1e3:.1f}'} | "
            f"{row['background_cpu_median_s'] * 1e3:.1f} | "
            f"{row.get('after_cpu_median_s', 0.0) * 1e3:.1f} | {row['threads_left_max']} | "
            f"{'' if energy is None else f'{energy:.3g}'} |\n"
        )
    noise = []
    for framework, runs in _plain_runs(result).items():
        walls = [r["wall_s"] for r in runs]
        noise.append(f"{framework} {max(walls) / min(walls) - 1:.1%}")
    out.write("\nplain runs, slowest vs fastest (max/min − 1): " + ", ".join(noise) + "\n")
    out.write("import time of each tool (s, once per process, not in the window): ")
    out.write(
        ", ".join(f"{v} {t:.2f}" for v, t in result["import_s"].items() if t is not None) + "\n"
    )
    out.write(budget_lines(result) + "\n")


def _plain_runs(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every plain (reference) run, by framework."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, runs in result.get("plain_runs", {}).items():
        out.setdefault(key.split("/")[0], []).extend(runs)
    return out


def budget_lines(result: dict[str, Any]) -> str:
    """Issue 8's whole-run budget: defaults ≤ 1 % median, and below both peers."""
    lines = []
    for framework in {r["framework"] for r in result["rows"]}:
        rows = {r["variant"]: r for r in result["rows"] if r["framework"] == framework}
        ours = rows.get("hf-eco2ai")
        if ours is None:
            continue
        ok = ours["ratio_median"] <= BUDGET_RATIO
        ci = (
            f"95 % CI {ours['ratio_ci_low']:.4f}–{ours['ratio_ci_high']:.4f}; "
            if "ratio_ci_low" in ours
            else ""
        )
        text = (
            f"{framework}: hf-eco2ai median ratio {ours['ratio_median']:.4f} "
            f"({ci}budget ≤ {BUDGET_RATIO}: {'met' if ok else 'MISSED'})"
        )
        for peer in PEERS:
            if peer in rows:
                lower = ours["ratio_median"] < rows[peer]["ratio_median"]
                text += (
                    f"; vs {peer} {rows[peer]['ratio_median']:.4f}: "
                    f"{'lower' if lower else 'NOT lower'}"
                )
        lines.append(text)
    return "\n".join(sorted(lines))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or serve as a worker)."""
    parser = make_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="CI size: 3 rounds, 256 steps")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds of pairs (default 12)"
    )
    parser.add_argument(
        "--train-size", type=int, default=None, help="samples per run (8 per step; default 16384)"
    )
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_TOOLS),
        help=f"tools to pair with plain runs, among {', '.join(VARIANTS[1:])}",
    )
    parser.add_argument(
        "--python",
        default=None,
        help="interpreter of the workers (default: benchmarks/.venv-peers if present)",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave eco2ai/CodeCarbon out")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the workers")
    parser.add_argument(
        "--export-interval",
        type=float,
        default=10.0,
        help="metric export interval of the SDK reader in our variants (s)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep worker dirs/logs here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.worker:
        return worker(ns.worker, ns.threads)

    rounds = ns.rounds or (3 if ns.quick else 12)
    train_size = ns.train_size or (2048 if ns.quick else 16384)
    variants = [v for v in ns.variants.split(",") if v and v != "plain"]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        parser.error(f"variants: some of {VARIANTS[1:]} (each is paired with a plain run)")
    python = ns.python
    if python is None:
        python = str(PEERS_PYTHON) if PEERS_READY.exists() else sys.executable
    if ns.no_peers or (ns.python is None and not PEERS_READY.exists()):
        if not ns.no_peers:
            print(
                "note: benchmarks/.venv-peers not found (run `bash benchmarks/setup_peers.sh`); "
                "eco2ai and CodeCarbon left out",
                file=sys.stderr,
            )
        variants = [v for v in variants if v not in PEERS]
    frameworks = [f for f in ns.frameworks.split(",") if f]
    if set(frameworks) - set(FRAMEWORKS):
        parser.error(f"frameworks: some of {FRAMEWORKS}")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = run_benchmark(
        variants,
        frameworks,
        rounds,
        train_size,
        python,
        ns.threads,
        ns.export_interval,
        ns.keep,
        progress,
    )
    return emit(result, ns.json, lambda r: print_table(r, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
