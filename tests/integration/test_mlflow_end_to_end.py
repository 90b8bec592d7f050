"""End to end: ``opentelemetry-instrument --metrics_exporter mlflow,otlp --traces_exporter
otlp,mlflow python examples/train_hf.py`` writes to a real MLflow tracking store.

The subprocess trains the tiny BERT for one epoch; the SDK's configurator loads our ``mlflow``
entry points next to ``otlp`` (exporting to the OTLP receiver of
``tests/integration/otlp_receiver.py``). The tracking store is sqlite in a temporary directory
(``MLFLOW_TRACKING_URI``). The test reads the store back with ``MlflowClient``: one run, created
by the bridge in ``MLFLOW_EXPERIMENT_NAME`` and finished at exit, with the metric history of
``hw.energy.cpu`` … (timestamps, steps up to the final step count) and the run span's totals as
metrics, params and tags; OTLP still received the same metrics and spans. A second run points
MLflow at a closed port: training exits 0, promptly, and the outage is reported once per bridge.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
pytest.importorskip("sqlalchemy", reason="mlflow's sqlite store needs SQLAlchemy (dev extra)")

from tests.integration.otlp_receiver import OTLPReceiver, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*"),
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "train_hf.py"
TIMEOUT_S = 150
TRAIN_SIZE = 64
STEPS = TRAIN_SIZE // 8  # examples/train_hf.py's default batch size is 8
SERVICE = "hf-eco2ai-mlflow-e2e"
EXPERIMENT = "hf-eco2ai-e2e"
SUMMARY = "hf-eco2ai: transformers run used"


def _instrument() -> Path:
    script = Path(sys.executable).parent / "opentelemetry-instrument"
    if not script.exists():
        pytest.skip(f"opentelemetry-instrument not found next to {sys.executable}")
    return script


def _train(
    tmp: Path, tracking_uri: str, otlp_endpoint: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    others = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")} - {"hf_eco2ai"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL": "0.1",
            "OTEL_PYTHON_HF_ECO2AI_COUNTRY": "FR",
            "OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR": str(tmp / "reports"),
            # importing MLflow and creating the sqlite schema took 10.6 s on a slow machine: the
            # start-up has its own bound (exports wait in line meanwhile), set here to fit the
            # subprocess' own budget rather than left to the default
            "OTEL_PYTHON_HF_ECO2AI_MLFLOW_STARTUP_TIMEOUT": str(TIMEOUT_S - 30),
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(sorted(others)),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    cmd = [
        str(_instrument()),
        "--metrics_exporter",
        "mlflow,otlp",
        "--traces_exporter",
        "otlp,mlflow",
        sys.executable,
        str(EXAMPLE),
        "--epochs",
        "1",
        "--train-size",
        str(TRAIN_SIZE),
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"training did not finish in {TIMEOUT_S} s\n--- stderr ---\n{exc.stderr}")
    return proc, time.monotonic() - t0


def _log(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr[-8000:]}"


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    wall_s: float
    uri: str
    receiver: OTLPReceiver


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("mlflow-e2e")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with OTLPReceiver() as receiver:
        proc, wall = _train(tmp, uri, receiver.endpoint)
        assert proc.returncode == 0, _log(proc)
        receiver.wait_for(lambda r: bool(r.spans_named("transformers.trainer.train")), timeout=5)
        yield Run(proc, wall, uri, receiver)


def test_training_succeeds_without_bridge_errors(e2e: Run) -> None:
    assert SUMMARY in e2e.proc.stderr, _log(e2e.proc)
    assert "to MLflow failed" not in e2e.proc.stderr, _log(e2e.proc)
    assert "Traceback" not in e2e.proc.stderr, _log(e2e.proc)


def test_one_finished_run_in_the_experiment(e2e: Run) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(e2e.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    # metrics and span bridges share the run they created
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.run_name == SERVICE
    assert run.info.status == "FINISHED"
    assert run.data.tags["hf_eco2ai.created_by"]


def _the_run(e2e: Run) -> tuple[object, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(e2e.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run.info.run_id


def test_metric_history_from_the_exporter(e2e: Run) -> None:
    client, run_id = _the_run(e2e)
    metrics = client.get_run(run_id).data.metrics  # type: ignore[attr-defined]
    for key in (
        "hw.energy.cpu",
        "hw.energy.memory",
        "hw.power.cpu",
        "hf_eco2ai.energy.cpu",
        "hf_eco2ai.emissions.cpu",
        "hf_eco2ai.carbon_intensity",
        "hf_eco2ai.training.samples",
    ):
        assert key in metrics, sorted(metrics)
    assert metrics["hf_eco2ai.training.steps"] == STEPS
    assert metrics["hf_eco2ai.training.samples"] == TRAIN_SIZE
    history = client.get_metric_history(run_id, "hw.energy.cpu")  # type: ignore[attr-defined]
    assert len(history) >= 2, history  # exported every second, and once more at exit
    timestamps = [m.timestamp for m in history]
    assert timestamps == sorted(timestamps)
    values = [m.value for m in sorted(history, key=lambda m: m.timestamp)]
    assert values == sorted(values)  # cumulative energy never goes down
    assert values[-1] > 0
    assert max(m.step for m in history) == STEPS  # the step is the training step count


def test_run_span_totals(e2e: Run) -> None:
    client, run_id = _the_run(e2e)
    data = client.get_run(run_id).data  # type: ignore[attr-defined]
    assert data.metrics["hf_eco2ai.energy.joules"] > 0
    assert data.metrics["hf_eco2ai.emissions.grams"] > 0
    assert data.metrics["hf_eco2ai.energy.cpu.joules"] > 0
    assert data.params["hf_eco2ai.grid.zone"] == "FR"
    assert data.params["hf_eco2ai.framework"] == "transformers"
    assert data.params["hf_eco2ai.energy.method"]
    assert data.params["hf_eco2ai.model.class"] == "BertForSequenceClassification"
    assert data.tags["hf_eco2ai.status"] == "OK"
    # the run links to its trace, which OTLP delivered
    (span,) = e2e.receiver.spans_named("transformers.trainer.train")
    assert data.tags["hf_eco2ai.trace_id"] == span.trace_id.hex()
    assert data.metrics["hf_eco2ai.energy.joules"] == pytest.approx(
        span.attributes["hf_eco2ai.energy.joules"]
    )


def test_otlp_still_receives_metrics(e2e: Run) -> None:
    assert e2e.receiver.metrics_named("hw.energy")
    assert e2e.receiver.metrics_named("hf_eco2ai.emissions")


def test_unreachable_tracking_server(tmp_path: Path, e2e: Run) -> None:
    """MLflow down: training finishes, exits 0, promptly; one warning per bridge."""
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with OTLPReceiver() as receiver:
        proc, wall = _train(tmp_path, uri, receiver.endpoint)
    assert proc.returncode == 0, _log(proc)
    assert SUMMARY in proc.stderr, _log(proc)
    failures = [line for line in proc.stderr.splitlines() if "to MLflow failed" in line]
    assert 1 <= len(failures) <= 2, failures  # metrics export, run summary: once each
    assert "Retrying (Retry(" not in proc.stderr  # urllib3's per-retry noise is kept down
    assert "Traceback" not in proc.stderr, _log(proc)
    # MLflow's client alone would retry a refused connection for minutes; the bridge's probe
    # gives up at once, so the run takes no longer than the healthy one (plus noise).
    assert wall < e2e.wall_s + 10, (wall, e2e.wall_s)
