"""Process faults: an exception or KeyboardInterrupt inside training, SIGTERM, an explicit
callback whose run never ends, and forked DataLoader workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from train_hf import make_trainer
from transformers import TrainerCallback

from hf_eco2ai import CarbonConfig, Eco2AICallback, HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor
from hf_eco2ai.run import Run, end_open_runs, open_runs
from hf_eco2ai.run.registry import _end_open_runs_at_exit
from hf_eco2ai.run.sigterm import SigtermHandler
from hf_eco2ai.sampling_thread import _LIVE
from tests.reliability.conftest import (
    REPO,
    RUN,
    Telemetry,
    assert_energy_is_power_times_duration,
    fast_config,
    instrumented,
    one_report,
    reports,
    sampler_threads,
)

JOB = Path(__file__).parent / "scripts" / "train_job.py"


class Boom(RuntimeError):
    pass


class RaiseAt(TrainerCallback):  # type: ignore[misc]
    def __init__(self, step: int, exc: BaseException) -> None:
        self.step = step
        self.exc = exc

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise self.exc


# ---------------------------------------------------------------------------------- in process
@pytest.mark.parametrize(
    ("exc", "status"),
    [(Boom("injected"), "error"), (KeyboardInterrupt(), "interrupted")],
    ids=["exception", "keyboard-interrupt"],
)
def test_exception_inside_training_writes_the_report_and_ends_spans(
    fake_devices: None, telemetry: Telemetry, exc: BaseException, status: str
) -> None:
    """Would catch: the exception swallowed or replaced by a telemetry error, the run's spans
    left open, or the report (the one artefact left after a crash) not written."""
    with instrumented(telemetry, fast_config()):
        trainer = make_trainer(
            "o", train_size=64, eval_size=8, epochs=2, callbacks=[RaiseAt(3, exc)]
        )
        with pytest.raises(type(exc)):
            trainer.train()
        assert open_runs() == []
    report = one_report("runs")
    assert report["run"]["status"] == status
    assert report["run"]["error_type"] == type(exc).__qualname__
    assert_energy_is_power_times_duration(report)
    (run,) = telemetry.finished(RUN)
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["error.type"] == type(exc).__qualname__
    epochs = telemetry.finished("transformers.trainer.epoch")
    assert epochs and epochs[-1].status.status_code is StatusCode.ERROR
    rows = (Path("runs") / "emissions.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2  # header + this run


def test_explicit_callback_run_left_open_is_ended_at_exit(fake_devices: None) -> None:
    """An explicit ``Eco2AICallback`` without the instrumentor never hears of an exception in
    training (TrainerCallback has no such hook). Would catch: that run's spans never ending
    and its report never being written (the at-exit hook ends it with status error, at its
    last training event), or its power.png left to a thread the exiting interpreter would not
    wait for."""
    callback = Eco2AICallback(CarbonConfig(sample_interval=0.05, output_dir="runs"))
    trainer = make_trainer(
        "e", train_size=64, eval_size=8, callbacks=[callback, RaiseAt(2, Boom())]
    )
    with pytest.raises(Boom):
        trainer.train()
    left_at = time.time()
    assert [r is callback.run for r in open_runs()] == [True]
    assert reports("runs") == []
    time.sleep(0.2)  # the time until exit is not the run's
    _end_open_runs_at_exit()  # what atexit runs at interpreter exit
    report = one_report("runs")
    assert report["run"]["status"] == "error"
    assert report["run"]["error_type"] == "RunNotEnded"
    from datetime import datetime

    assert datetime.fromisoformat(report["run"]["end"]).timestamp() <= left_at
    assert (Path("runs") / report["run"]["id"] / "power.png").exists()  # drawn inline
    assert open_runs() == []


def test_sigterm_handler_is_installed_only_over_the_default_action(
    fake_devices: None, telemetry: Telemetry
) -> None:
    """Would catch: replacing a handler the program (or a framework) installed, keeping ours
    after uninstrument(), or installing one although ``handle_sigterm=False`` (the default)."""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with instrumented(telemetry, fast_config(handle_sigterm=True)):
        installed = signal.getsignal(signal.SIGTERM)
        assert installed is not signal.SIG_DFL
        assert getattr(installed, "__self__", None).__class__ is SigtermHandler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with instrumented(telemetry, fast_config(handle_sigterm=False)):
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with instrumented(telemetry, fast_config()):  # the default: no process-wide handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def mine(signum: int, frame: Any) -> None:  # pragma: no cover - never called
        pass

    for theirs in (mine, signal.SIG_IGN):
        previous = signal.signal(signal.SIGTERM, theirs)
        try:
            with instrumented(telemetry, fast_config(handle_sigterm=True)):
                assert signal.getsignal(signal.SIGTERM) is theirs
            assert signal.getsignal(signal.SIGTERM) is theirs
        finally:
            signal.signal(signal.SIGTERM, previous)


def test_sigterm_handler_chained_by_another_handler_does_nothing(
    fake_devices: None, telemetry: Telemetry
) -> None:
    """Lightning's SIGTERM handler calls the handler it found installed (ours) and then lets
    training stop gracefully. Would catch: ours ending the run and killing the process from
    inside someone else's handler."""
    with instrumented(telemetry, fast_config(handle_sigterm=True)):
        ours = signal.getsignal(signal.SIGTERM)
        calls = []

        def composite(signum: int, frame: Any) -> None:
            calls.append(signum)
            ours(signum, frame)  # type: ignore[operator]

        signal.signal(signal.SIGTERM, composite)
        try:
            trainer = make_trainer("c", train_size=32, eval_size=8, epochs=1)
            trainer.train()
            os.kill(os.getpid(), signal.SIGTERM)  # we are still alive afterwards
            time.sleep(0.05)
        finally:
            signal.signal(signal.SIGTERM, ours)
    assert calls == [signal.SIGTERM]
    assert one_report("runs")["run"]["status"] == "ok"


# ---------------------------------------------------------------------------------- subprocess
def _job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "OTEL_PYTHON_HF_ECO2AI_WRITE_REPORT": "true",
        }
    )
    env.update(extra)
    return env


def _terminate_mid_run(tmp_path: Path, **env: str) -> tuple[int, str, list[dict[str, Any]]]:
    spans_file = tmp_path / "spans.jsonl"
    cmd = [
        sys.executable,
        str(JOB),
        "--output-dir",
        str(tmp_path / "runs"),
        "--spans-file",
        str(spans_file),
        "--fake-devices",
        "--train-size",
        "4000",
        "--ready-step",
        "3",
        "--step-sleep",
        "0.02",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_job_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "READY":
                break
        else:
            pytest.fail(f"the job never got ready:\n{proc.stderr.read() if proc.stderr else ''}")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    spans = []
    if spans_file.exists():
        spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    return proc.returncode, stderr, spans


@pytest.mark.slow
def test_sigterm_ends_spans_writes_report_and_still_dies_of_sigterm(tmp_path: Path) -> None:
    """Python's default SIGTERM action kills at once: no ``finally``, no ``atexit``, so the run's
    spans and report were lost. Would catch: that loss (no report, no exported run span), and a
    handler that changes how the process ends (it must still die of SIGTERM)."""
    code, stderr, spans = _terminate_mid_run(tmp_path, OTEL_PYTHON_HF_ECO2AI_HANDLE_SIGTERM="true")
    assert code == -signal.SIGTERM, stderr[-3000:]
    report = one_report(tmp_path / "runs")
    assert report["run"]["status"] == "interrupted", report["run"]
    assert report["run"]["error_type"] == "Terminated"
    assert report["efficiency"]["samples"] > 0
    assert_energy_is_power_times_duration(report)
    # drawn before the process dies
    assert (tmp_path / "runs" / report["run"]["id"] / "power.png").stat().st_size > 10_000
    runs = [s for s in spans if s["name"] == RUN]
    assert len(runs) == 1, [s["name"] for s in spans]
    assert runs[0]["status"] == "ERROR"
    assert runs[0]["attributes"]["error.type"] == "Terminated"
    assert runs[0]["attributes"]["hf_eco2ai.energy.joules"] > 0
    assert "SIGTERM: 1 open run(s) ended and reported" in stderr


@pytest.mark.slow
def test_sigterm_handling_is_off_by_default(tmp_path: Path) -> None:
    """By default no handler is installed: Python's default SIGTERM action, killed at once.
    Would catch: a process-wide handler installed without being asked for."""
    code, stderr, spans = _terminate_mid_run(tmp_path)
    assert code == -signal.SIGTERM, stderr[-3000:]
    assert reports(tmp_path / "runs") == []
    assert spans == []


# ---------------------------------------------------------------------------------- fork
def _probe_worker(directory: str) -> None:
    """Runs inside a DataLoader worker (a forked child): what does hf-eco2ai look like here?"""
    path = Path(directory) / f"{os.getpid()}.json"
    if path.exists():
        return
    shared = monitor.shared_monitor()
    state: dict[str, Any] = {
        "live_samplers": [s for s in list(_LIVE) if not s._inherited].__len__(),
        "sampler_running": bool(shared and shared.running),
        "sampler_threads": len(sampler_threads()),
    }
    if shared is not None:
        seq = shared.snapshot().seq
        shared.sampler.tick()  # a no-op in a child: the parent measures
        shared.ledger.history()  # takes the ledger lock: must not deadlock
        time.sleep(0.15)
        state["seq_moved"] = shared.snapshot().seq != seq
    state["open_runs"] = len(open_runs())
    state["sigterm_default"] = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    path.write_text(json.dumps(state))


@pytest.fixture
def worker_dir(tmp_path: Path) -> Path:
    d = tmp_path / "workers"
    d.mkdir()
    return d


def test_dataloader_workers_fork_no_sampler_no_deadlock_no_double_count(
    fake_devices: None, telemetry: Telemetry, worker_dir: Path
) -> None:
    """``dataloader_num_workers=2``: the workers are forked from the training process while the
    sampler thread runs. Would catch: a sampler running (or restarted) in a worker, a worker
    deadlocking on a lock the sampler held at fork time, a worker ending/reporting the parent's
    run or keeping our SIGTERM handler, and energy counted more than once."""
    import torch.multiprocessing as mp

    if mp.get_start_method(allow_none=True) not in (None, "fork"):
        pytest.skip("workers are not forked here")
    from train_hf import SyntheticTextDataset

    class Probing(SyntheticTextDataset):
        def __getitem__(self, i: int) -> dict[str, Any]:
            if torch_info() is not None:
                _probe_worker(str(worker_dir))
            return super().__getitem__(i)

    def torch_info() -> Any:
        from torch.utils.data import get_worker_info

        return get_worker_info()

    done = threading.Event()
    with instrumented(telemetry, fast_config()):
        trainer = make_trainer("f", train_size=64, eval_size=16, epochs=2, dataloader_num_workers=2)
        trainer.train_dataset = Probing(64, seed=1)
        trainer.eval_dataset = Probing(16, seed=2)
        runner = threading.Thread(target=lambda: (trainer.train(), done.set()), daemon=True)
        runner.start()
        runner.join(120)
        assert done.is_set(), "training with forked DataLoader workers hung"
        assert len(sampler_threads()) == 1
    states = [json.loads(p.read_text()) for p in worker_dir.glob("*.json")]
    assert len(states) >= 2, "no DataLoader worker ran"
    for state in states:
        assert state == {
            "live_samplers": 0,
            "sampler_running": False,
            "sampler_threads": 0,
            "seq_moved": False,
            "open_runs": 0,
            "sigterm_default": True,
        }
    report = one_report("runs")
    assert_energy_is_power_times_duration(report)
    assert report["efficiency"]["samples"] == 128
    assert len((Path("runs") / "emissions.csv").read_text().splitlines()) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_storm_while_sampling_never_deadlocks(
    fake_devices: None, telemetry: Telemetry
) -> None:
    """20 children forked at random moments of a 50 ms sampler; each reads snapshots, the
    history (ledger lock) and ends its inherited open runs. Would catch: a lock inherited in
    the held state (a child hangs), and a child ending or reporting the parent's run."""
    with instrumented(telemetry, fast_config()):
        session = HFEco2AIInstrumentor().session
        assert session is not None
        shared = session.monitor
        run = Run(session, "transformers", "transformers.trainer", config=fast_config())
        run.begin({})
        children = []
        for k in range(20):
            time.sleep(0.003 * (k % 7))
            pid = os.fork()
            if pid == 0:  # child
                code = 0
                try:
                    shared.snapshot()
                    shared.ledger.history()
                    shared.sampler.tick()
                    if end_open_runs(RuntimeError("child")) != 0:
                        code = 3
                except BaseException:
                    code = 4
                os._exit(code)
            children.append(pid)
        deadline = time.monotonic() + 20
        codes = []
        for pid in children:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    codes.append("hung")
                    break
                time.sleep(0.01)
        assert codes == [0] * 20
        assert run.running  # the parent's run is untouched
        run.finish({})
    assert len(reports("runs")) == 1
