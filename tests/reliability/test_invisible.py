"""Invisible inside the training process: the program, the patched libraries and their random
streams see nothing of hf-eco2ai but its telemetry.

Each test names what it would catch. Subprocess tests run a real interpreter, because exit
statuses, forks and fresh random seeds are properties of a process.
"""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from train_hf import make_trainer
from transformers import TrainerCallback

from hf_eco2ai import Eco2AICallback
from hf_eco2ai import energy_monitor as monitor
from hf_eco2ai.run import open_runs
from tests.reliability.conftest import (
    REPO,
    RUN,
    Telemetry,
    fast_config,
    instrumented,
    one_report,
    reports,
)

JOB = Path(__file__).parent / "scripts" / "train_job.py"


class Boom(RuntimeError):
    pass


class RaiseAt(TrainerCallback):  # type: ignore[misc]
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise Boom("injected")


def _thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


# ---------------------------------------------------------------------------------- ids, RNG
_TRACE_ID_SCRIPT = """
import random, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from hf_eco2ai import CarbonConfig
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.run import Run
from hf_eco2ai.telemetry.session import TelemetrySession

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
config = CarbonConfig(write_report=False)
monitor = EnergyMonitor(config, sensors=[],
                        intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "config")))
session = TelemetrySession(config, tracer_provider=provider, monitor=monitor)
random.seed(42)  # what Trainer(set_seed) and Lightning's seed_everything do
run = Run(session, "demo", "demo")
run.begin({})
run.begin_epoch(0)
run.end_epoch({})
run.finish({})
after = random.random()
session.close()
spans = exporter.get_finished_spans()
print(format(spans[-1].context.trace_id, "032x"), after)
"""


def _trace_id_and_next_random() -> tuple[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _TRACE_ID_SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    return out[0], float(out[1])


def test_same_seed_processes_get_different_trace_ids_and_keep_their_random_stream() -> None:
    """Would catch: span ids drawn from the global ``random`` (the SDK default): two jobs seeded
    alike share one trace id, and the program's next ``random.random()`` changes."""
    first, after_first = _trace_id_and_next_random()
    second, after_second = _trace_id_and_next_random()
    assert first != second
    random.seed(42)
    expected = random.random()
    assert after_first == after_second == expected


def test_sdk_default_generator_would_collide() -> None:
    """The property above is not vacuous: the SDK's default generator, seeded alike, repeats."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    random.seed(42)
    a = RandomIdGenerator().generate_trace_id()
    random.seed(42)
    b = RandomIdGenerator().generate_trace_id()
    assert a == b


def _train_and_collect(output_dir: str) -> tuple[list[torch.Tensor], list[float], float]:
    trainer = make_trainer(output_dir, train_size=32, eval_size=8, epochs=1, logging_steps=1)
    trainer.train()
    params = [p.detach().clone() for p in trainer.model.parameters()]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return params, losses, random.random()


def test_same_seed_training_is_bit_identical_with_and_without_instrumentation(
    fake_devices: None, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Would catch: instrumentation that changes training (parameters, losses) or the global
    random stream the program draws from after training."""
    plain_params, plain_losses, plain_next = _train_and_collect(str(tmp_path / "plain"))
    with instrumented(telemetry, fast_config()):
        params, losses, next_random = _train_and_collect(str(tmp_path / "instrumented"))
    assert telemetry.finished(RUN)  # it was measured
    assert losses == plain_losses and losses
    assert all(torch.equal(a, b) for a, b in zip(params, plain_params, strict=True))
    assert next_random == plain_next


def test_same_seed_lightning_fit_is_bit_identical_with_and_without_instrumentation(
    fake_devices: None, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Would catch: the Lightning callback changing training or the global random stream."""
    import lightning.pytorch as pl

    def fit(root: Path) -> tuple[list[torch.Tensor], float]:
        pl.seed_everything(7, verbose=False)

        class Tiny(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(4, 1)

            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                x, y = batch
                return torch.nn.functional.mse_loss(self.layer(x), y)

            def configure_optimizers(self) -> Any:
                return torch.optim.SGD(self.parameters(), lr=0.1)

        data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
        loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True)
        model = Tiny()
        trainer = pl.Trainer(
            max_epochs=2,
            default_root_dir=str(root),
            logger=False,  # Lightning writes its checkpoints there: so does hf-eco2ai
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, loader)
        return [p.detach().clone() for p in model.parameters()], random.random()

    plain, plain_next = fit(tmp_path / "plain")
    with instrumented(telemetry, fast_config(output_dir=None)):
        measured, next_random = fit(tmp_path / "instrumented")
    assert telemetry.finished("lightning.trainer.fit")
    assert all(torch.equal(a, b) for a, b in zip(measured, plain, strict=True))
    assert next_random == plain_next
    # the report went to Lightning's own output location
    assert len(reports(tmp_path / "instrumented" / "hf-eco2ai")) == 1


# ---------------------------------------------------------------------------------- files
def test_reports_default_to_the_trainers_output_dir_and_nothing_lands_in_cwd(
    fake_devices: None, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Would catch: reports written to ``./hf-eco2ai-runs`` whatever the Trainer's
    ``output_dir``, or a relative directory resolved late (after an ``os.chdir``)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.chdir(cwd)
    with instrumented(telemetry, fast_config(output_dir=None)):

        class ChdirAtStep2(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step == 2:
                    os.chdir(tmp_path)

        trainer = make_trainer("out", train_size=32, eval_size=8, callbacks=[ChdirAtStep2()])
        trainer.train()
    report = one_report(cwd / "out" / "hf-eco2ai")
    run_dir = cwd / "out" / "hf-eco2ai" / report["run"]["id"]
    assert (run_dir / "power.png").exists()  # with report.json, despite the chdir
    assert sorted(p.name for p in cwd.iterdir()) == ["out"]
    assert not (tmp_path / "hf-eco2ai-runs").exists()


# ---------------------------------------------------------------------------------- threads
def test_no_thread_outlives_train_without_the_instrumentor(
    fake_devices: None, tmp_path: Path
) -> None:
    """Would catch: a sampler or drawing thread left running after ``train()`` returns."""
    before = _thread_names()
    callback = Eco2AICallback(fast_config(output_dir=str(tmp_path / "runs")))
    make_trainer(str(tmp_path / "o"), train_size=32, eval_size=8, callbacks=[callback]).train()
    assert _thread_names() == before
    assert monitor.shared_monitor() is None


def test_only_the_sampler_runs_between_trainings_while_instrumented(
    fake_devices: None, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Would catch: threads of ours beyond the one sampler while instrumented, or any left
    after ``uninstrument()``."""
    before = _thread_names()
    with instrumented(telemetry, fast_config()):
        make_trainer(str(tmp_path / "o"), train_size=32, eval_size=8).train()
        extra = [n for n in _thread_names() if n not in before]
        ours = sorted(n for n in extra if n.startswith("hf-eco2ai"))
        # the sampler and its watchdog (no I/O; lives and stops with it)
        assert ours == ["hf-eco2ai-sampler", "hf-eco2ai-sampler-watchdog"]
    assert _thread_names() == before


# ---------------------------------------------------------------------------------- lifecycle
def test_explicit_callback_settings_win_while_instrumented(
    fake_devices: None, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Would catch: an explicit callback's own output directory and project name ignored in
    favour of the instrumentor's."""
    with instrumented(telemetry, fast_config(output_dir=str(tmp_path / "instrumentor"))):
        mine = Eco2AICallback(
            fast_config(output_dir=str(tmp_path / "mine"), project_name="my-project")
        )
        make_trainer(str(tmp_path / "o"), train_size=32, eval_size=8, callbacks=[mine]).train()
    report = one_report(tmp_path / "mine")
    assert report["run"]["project_name"] == "my-project"
    assert reports(tmp_path / "instrumentor") == []
    assert len(telemetry.finished(RUN)) == 1


def test_caught_failure_of_an_explicit_callback_run_ends_when_the_callback_goes(
    fake_devices: None, tmp_path: Path
) -> None:
    """A sweep loop catches a trial's exception and drops the Trainer. Would catch: the run
    lost (no report, sampler running on) or stretched to whenever it is noticed."""
    callback = Eco2AICallback(fast_config(output_dir=str(tmp_path / "runs")))
    trainer = make_trainer(
        str(tmp_path / "o"), train_size=64, eval_size=8, callbacks=[callback, RaiseAt(2)]
    )
    with pytest.raises(Boom):
        trainer.train()
    left_at = time.time()
    assert monitor.shared_monitor() is not None
    time.sleep(0.2)
    del trainer, callback
    gc.collect()
    report = one_report(tmp_path / "runs")
    assert report["run"]["status"] == "error"
    assert datetime.fromisoformat(report["run"]["end"]).timestamp() <= left_at
    assert monitor.shared_monitor() is None  # its sampler stopped with it
    assert open_runs() == []


def test_caught_failure_then_next_trial_ends_the_first_run_at_its_own_end(
    fake_devices: None, tmp_path: Path
) -> None:
    """Would catch: a kept callback's failed run extending over (and double counting) the next
    trial."""
    callback = Eco2AICallback(fast_config(output_dir=str(tmp_path / "runs")))
    failing = make_trainer(
        str(tmp_path / "a"), train_size=64, eval_size=8, callbacks=[callback, RaiseAt(2)]
    )
    with pytest.raises(Boom):
        failing.train()
    left_at = time.time()
    time.sleep(0.2)
    make_trainer(str(tmp_path / "b"), train_size=32, eval_size=8, callbacks=[callback]).train()
    first, second = reports(tmp_path / "runs")
    assert first["run"]["status"] == "error"
    assert datetime.fromisoformat(first["run"]["end"]).timestamp() <= left_at
    assert second["run"]["status"] == "ok"


# ---------------------------------------------------------------------------------- process
def _job(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    cmd = [
        sys.executable,
        str(JOB),
        "--output-dir",
        str(tmp_path / "runs"),
        "--fake-devices",
        "--train-size",
        "64",
        *args,
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("leave", "code", "status"),
    [("keyboard", -signal.SIGINT, "interrupted"), ("exit3", 3, "interrupted")],
)
def test_exit_status_is_the_programs(tmp_path: Path, leave: str, code: int, status: str) -> None:
    """Ctrl-C must still end the process with -SIGINT (130 from a shell), ``sys.exit(3)`` with
    3. Would catch: our exception handling, report writing or at-exit work turning them into
    an ordinary failure (1)."""
    proc = _job(tmp_path, "--leave", leave)
    assert proc.returncode == code, proc.stderr[-3000:]
    report = one_report(tmp_path / "runs")
    assert report["run"]["status"] == status


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_leaving_through_sys_exit_does_not_report_the_parents_run(
    tmp_path: Path,
) -> None:
    """Would catch: a child that unwinds the inherited ``train()`` ending the parent's run: a
    second report and a second CSV row for one run."""
    proc = _job(tmp_path, "--leave", "fork-exit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = one_report(tmp_path / "runs")
    assert report["run"]["status"] == "ok"
    rows = (tmp_path / "runs" / "emissions.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2  # header + the parent's run
    assert json.dumps(report)  # a complete, parseable report
