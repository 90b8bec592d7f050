"""The ``measure()`` examples run as users run them (subprocesses, CPU, offline).

* ``examples/plain_pytorch_loop.py``: a run window with one window per epoch, with and without
  ``instrument()``;
* ``examples/inference.py``: ``evaluate()``/``predict()`` without ``train()``, and
  ``model.generate`` in a loop (a decorated function, a fresh window per batch);
* ``examples/accelerate_loop.py`` under ``accelerate launch`` with two CPU processes: each rank
  measures its own devices (host CPU/RAM on local rank 0 only), and the job total rank 0
  gathers is the sum of the ranks' run windows.

Real sensors of this machine (RAPL or the TDP model, the RAM model): energies are checked for
consistency (windows inside a window use no more than it), not for values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.otlp_receiver import free_port

pytestmark = pytest.mark.slow  # each starts Python with torch (and transformers): 20-60 s here

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent
HOST = {"cpu", "memory"}
SAMPLE_INTERVAL_S = 0.1


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        PYTHONPATH=str(REPO / "src"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL=str(SAMPLE_INTERVAL_S),
        OTEL_PYTHON_HF_ECO2AI_COUNTRY="FR",
        OTEL_PYTHON_HF_ECO2AI_WRITE_REPORT="false",
    )
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=cwd, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _inside(outer: dict[str, Any], inner: list[dict[str, Any]]) -> None:
    """Windows within ``outer``: together no more time than it, and no more energy than it
    up to what extrapolation may misplace at the boundaries.

    A window's end between two sampler ticks is extrapolated with the power of the last tick;
    when the power then drops, the next tick's reading is below that extrapolation, by at most
    half the power times the sampling interval. So at each of the ``len(inner) + 1`` gaps
    between the windows the sum may exceed ``outer`` by that much; double counting (a window
    counted twice, the host counted twice) exceeds it by far more.
    """
    assert all(w["energy_j"] >= 0 for w in inner)
    assert sum(w["duration_s"] for w in inner) <= outer["duration_s"] + 1e-9
    mean_power_w = outer["energy_j"] / outer["duration_s"]
    slack = 2.0 * mean_power_w * SAMPLE_INTERVAL_S * (len(inner) + 1)
    assert sum(w["energy_j"] for w in inner) <= outer["energy_j"] + slack


@pytest.mark.parametrize("instrument", [False, True], ids=["standalone", "instrumented"])
def test_plain_pytorch_loop(tmp_path: Path, instrument: bool) -> None:
    result = tmp_path / "result.json"
    cmd = [sys.executable, str(EXAMPLES / "plain_pytorch_loop.py"), "--epochs", "2"]
    cmd += ["--size", "256", "--result", str(result)] + (["--instrument"] if instrument else [])
    proc = _run(cmd, tmp_path)
    data = json.loads(result.read_text())
    run, epochs = data["run"], data["epochs"]
    assert len(epochs) == 2
    assert run["energy_j"] > 0 and run["emissions_g"] > 0
    assert set(run["devices"]) >= HOST  # one process: local rank 0 measures the host
    assert run["energy_low_j"] <= run["energy_j"] <= run["energy_high_j"]
    assert sum(run["devices"].values()) * run["pue"] == pytest.approx(run["energy_j"])
    _inside(run, epochs)
    assert data["samples"] == 512
    assert "run:" in proc.stdout and "epoch 1:" in proc.stdout


def test_inference_outside_training(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    cmd = [sys.executable, str(EXAMPLES / "inference.py"), "--eval-size", "32"]
    cmd += ["--batches", "3", "--batch-size", "4", "--new-tokens", "5", "--result", str(result)]
    _run(cmd, tmp_path)
    data = json.loads(result.read_text())
    assert data["predicted_rows"] == 32
    for name in ("evaluate", "predict", "generate"):
        assert data[name]["energy_j"] > 0, name
        assert set(data[name]["devices"]) >= HOST
    assert data["generated_tokens"] == 3 * 4 * 5
    batches = data["batches"]
    assert len(batches) == 3  # the decorator opened a fresh window per call
    assert len({(b["duration_s"], b["energy_j"]) for b in batches}) == 3
    _inside(data["generate"], batches)


def test_accelerate_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--main_process_port", str(free_port())]
    cmd += [str(EXAMPLES / "accelerate_loop.py"), "--epochs", "2", "--size", "64"]
    cmd += ["--batch-size", "8", "--result-dir", str(out)]
    proc = _run(cmd, tmp_path)
    ranks = {r: json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)}
    for r, data in ranks.items():
        assert data["rank"] == r and data["local_rank"] == r and data["world_size"] == 2
        assert data["samples"] == 64  # each rank its half of 64 examples, twice
        _inside(data["run"], data["epochs"])
    # the host's CPU and RAM once, by local rank 0; no GPU here, so rank 1 measures nothing
    assert set(ranks[0]["run"]["devices"]) >= HOST
    assert ranks[0]["run"]["energy_j"] > 0
    assert not HOST & set(ranks[1]["run"]["devices"])
    job = ranks[0]["job"]
    assert job["energy_j"] == pytest.approx(sum(d["run"]["energy_j"] for d in ranks.values()))
    assert job["emissions_g"] == pytest.approx(sum(d["run"]["emissions_g"] for d in ranks.values()))
    assert job["samples"] == 128
    assert "job (2 ranks)" in proc.stdout
