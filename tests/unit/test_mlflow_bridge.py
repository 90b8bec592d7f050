"""The MLflow bridge against a real MLflow tracking store (sqlite in a temporary directory).

In process: metric-name mapping, what one export writes (keys, values, timestamps, steps,
batching), which run receives it (created, active in another thread, ``MLFLOW_RUN_ID``), the
run-span summary (metrics, params, tags, trace id), the entry points the SDK's configurator
loads, and the failure paths: an unreachable tracking server, MLflow missing, bad input — all
bounded in time, logged once, never raised. The ``opentelemetry-instrument`` subprocess run is
in ``tests/integration/test_mlflow_end_to_end.py``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
pytest.importorskip("sqlalchemy", reason="mlflow's sqlite store needs SQLAlchemy (dev extra)")

from mlflow.tracking import MlflowClient  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import (  # noqa: E402
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode  # noqa: E402

from hf_eco2ai.exporters.mlflow import (  # noqa: E402
    MetricPoint,
    MLflowMetricExporter,
    MLflowRunSummaryProcessor,
    MLflowSpanExporter,
    active_mlflow_run_id,
    metric_points,
    mlflow_metric_key,
    run_summary,
)
from hf_eco2ai.exporters.mlflow.client import MlflowRuns, forget_created_runs  # noqa: E402
from tests.integration.otlp_receiver import free_port  # noqa: E402

LOGGER = "hf_eco2ai.exporters.mlflow"
FLUSH_MS = 120_000
"""force_flush bound: a ceiling against a hang; the flush returns as soon as all is written."""
# MLflow's sqlite store uses SQLAlchemy APIs that SQLAlchemy 2.1 deprecates (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh sqlite tracking store; MLflow's env cleared so nothing leaks in."""
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    # create the schema here: these tests are about what the bridge writes, not how long a new
    # store takes to start (that is test_exports_made_while_mlflow_starts_are_queued_and_written)
    MlflowClient(uri).search_experiments(max_results=1)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    forget_created_runs()


def _collect(**instruments: Any) -> MetricsData:
    """Real SDK MetricsData: observable instruments of scope ``hf_eco2ai`` (and ``other``)."""
    from opentelemetry.metrics import Observation

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    ours = provider.get_meter("hf_eco2ai")
    other = provider.get_meter("other")
    for name, points in instruments.items():
        meter = other if name.startswith("other__") else ours
        obs = [Observation(v, a) for v, a in points]
        create = (
            meter.create_observable_gauge
            if "power" in name or "utilization" in name
            else meter.create_observable_counter
        )
        create(name.replace("__", "."), callbacks=[lambda _o, obs=obs: obs])
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


# ---------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "attributes", "key"),
    [
        ("hw.energy", {"hw.id": "cpu", "hw.type": "cpu", "hw.name": "AMD EPYC"}, "hw.energy.cpu"),
        ("hw.power", {"hw.id": "GPU-8c1f-01", "hw.type": "gpu"}, "hw.power.GPU-8c1f-01"),
        ("hf_eco2ai.emissions", {"hw.type": "memory"}, "hf_eco2ai.emissions.memory"),
        ("hf_eco2ai.training.steps", {"hf_eco2ai.framework": "x"}, "hf_eco2ai.training.steps"),
        ("hw.energy", {"hw.id": "a/b:c{d}", "hw.type": "cpu"}, "hw.energy.a_b_c_d_"),
        ("hw.energy", {"hw.id": "..", "hw.type": "cpu"}, "hw.energy._"),
        ("x", {"hw.id": "y" * 400}, "x." + "y" * 248),
    ],
)
def test_metric_key(name: str, attributes: dict[str, str], key: str) -> None:
    assert mlflow_metric_key(name, attributes) == key


def test_keys_are_valid_mlflow_names() -> None:
    from mlflow.utils.validation import _validate_metric_name

    for attrs in ({"hw.id": "nv/0:1"}, {"hw.type": "g p u"}, {"hw.id": "../etc"}):
        _validate_metric_name(mlflow_metric_key("hw.energy", attrs))


def test_metric_points_filter_step_and_collisions() -> None:
    data = _collect(
        hw__energy=[(10.0, {"hw.id": "cpu", "hw.type": "cpu"}), (2.0, {"hw.id": "memory"})],
        hf_eco2ai__training__steps=[
            (5, {"hf_eco2ai.framework": "transformers", "hf_eco2ai.rank": 0}),
            (3, {"hf_eco2ai.framework": "lightning", "hf_eco2ai.rank": 0}),
        ],
        hw__power=[(float("nan"), {"hw.id": "cpu"})],
        other__requests=[(7, {})],
    )
    points = {p.key: p for p in metric_points(data)}
    assert set(points) == {
        "hw.energy.cpu",
        "hw.energy.memory",
        # two frameworks would share a key: both spelled out (identity attributes left out)
        "hf_eco2ai.training.steps.transformers",
        "hf_eco2ai.training.steps.lightning",
    }
    assert points["hw.energy.cpu"].value == 10.0
    assert {p.step for p in points.values()} == {8}  # the exported step total
    now_ms = time.time() * 1000
    assert all(abs(p.timestamp_ms - now_ms) < 60_000 for p in points.values())
    everything = {p.key for p in metric_points(data, include_all=True)}
    assert "other.requests" in everything


# ---------------------------------------------------------------------------- export
def _run_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    return dict(client.get_run(run_id).data.metrics)


def test_export_creates_a_run_in_the_env_experiment(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf-eco2ai-unit")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "bert-unit")
    exporter = MLflowMetricExporter()
    first = _collect(hw__energy=[(10.0, {"hw.id": "cpu", "hw.type": "cpu"})])
    assert exporter.export(first) is MetricExportResult.SUCCESS
    time.sleep(0.01)
    second = _collect(
        hw__energy=[(25.0, {"hw.id": "cpu", "hw.type": "cpu"})],
        hf_eco2ai__training__steps=[(4, {"hf_eco2ai.framework": "transformers"})],
    )
    assert exporter.export(second) is MetricExportResult.SUCCESS
    assert exporter.force_flush(FLUSH_MS)
    run_id = exporter.created_run_id
    assert run_id is not None
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.run_name == "bert-unit"
    assert client.get_experiment(run.info.experiment_id).name == "hf-eco2ai-unit"
    assert run.info.status == "RUNNING"
    history = client.get_metric_history(run_id, "hw.energy.cpu")
    assert [(m.value, m.step) for m in history] == [(10.0, 0), (25.0, 4)]
    assert history[0].timestamp <= history[1].timestamp
    exporter.shutdown()
    assert client.get_run(run_id).info.status == "FINISHED"


def test_export_uses_the_run_active_in_another_thread(store: str) -> None:
    """The periodic reader exports on its own thread; mlflow.active_run() is thread-local."""
    with mlflow.start_run() as run:
        assert active_mlflow_run_id() == run.info.run_id
        exporter = MLflowMetricExporter()
        results: list[MetricExportResult] = []
        data = _collect(hw__energy=[(3.0, {"hw.id": "cpu"})])
        worker = threading.Thread(target=lambda: results.append(exporter.export(data)))
        worker.start()
        worker.join(30)
        assert results == [MetricExportResult.SUCCESS]
        assert exporter.created_run_id is None
        exporter.shutdown()
    assert _run_metrics(MlflowClient(store), run.info.run_id) == {"hw.energy.cpu": 3.0}
    assert active_mlflow_run_id() is None


def test_export_honours_mlflow_run_id(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient(store)
    run = client.create_run("0")
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    exporter = MLflowMetricExporter()
    assert exporter.export(_collect(hw__energy=[(1.5, {"hw.id": "memory"})])).name == "SUCCESS"
    assert exporter.force_flush(FLUSH_MS)
    assert exporter.created_run_id is None
    assert _run_metrics(client, run.info.run_id) == {"hw.energy.memory": 1.5}


def test_large_exports_are_chunked(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient(store)
    run_id = client.create_run("0").info.run_id
    runs = MlflowRuns(store, None, run_id, None)
    calls: list[int] = []
    real = runs.client()

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def log_batch(self, run_id: str, metrics: list[Any], **kw: Any) -> None:
            calls.append(len(metrics))
            real.log_batch(run_id, metrics=metrics, **kw)

    runs._client = Spy()
    points = [MetricPoint(f"m.{i}", float(i), 1_700_000_000_000, 0) for i in range(2100)]
    runs.log_metrics(run_id, points)
    assert calls == [1000, 1000, 100]
    assert len(_run_metrics(client, run_id)) == 2100


def test_other_instrumentations_are_not_logged(store: str) -> None:
    exporter = MLflowMetricExporter()
    assert exporter.export(_collect(other__requests=[(1, {})])) is MetricExportResult.SUCCESS
    assert exporter.created_run_id is None  # nothing to log: no run created


# ---------------------------------------------------------------------------- failures
def test_refused_connection_fails_fast_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    exporter = MLflowMetricExporter(tracking_uri=uri, experiment_name="x")
    data = _collect(hw__energy=[(1.0, {"hw.id": "cpu"})])
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    t0 = time.monotonic()
    results = [exporter.export(data) for _ in range(3)]
    exporter.shutdown()
    # MLflow's client would retry a refused connection for minutes; the probe answers at once
    assert time.monotonic() - t0 < 2.0
    assert results == [MetricExportResult.FAILURE] * 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "metrics export to MLflow failed" in warnings[0].getMessage()
    assert "unreachable" in warnings[0].getMessage()
    assert exporter.export(data) is MetricExportResult.FAILURE  # after shutdown


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A tracking server that accepts connections and never answers."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # the kernel completes handshakes; nobody ever reads or replies
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_silent_server_is_bounded_and_never_raises(
    silent_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = MLflowMetricExporter(tracking_uri=silent_server, experiment_name="x", timeout_s=1)
    data = _collect(hw__energy=[(1.0, {"hw.id": "cpu"})])
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    t0 = time.monotonic()
    assert exporter.export(data) is MetricExportResult.FAILURE
    first = time.monotonic() - t0
    t0 = time.monotonic()
    # the first call is still waiting for an answer: the next exports fail at once
    assert exporter.export(data) is MetricExportResult.FAILURE
    assert exporter.export(data) is MetricExportResult.FAILURE
    again = time.monotonic() - t0
    t0 = time.monotonic()
    exporter.shutdown(timeout_millis=1000)
    closing = time.monotonic() - t0
    assert 0.9 < first < 3.0, first
    assert again < 0.5, again
    assert closing < 2.5, closing
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "no answer within 1.0 s" in warnings[0].getMessage()
    messages = [r.getMessage() for r in caplog.records]
    assert any("has not returned yet" in m for m in messages), messages


def test_mlflow_missing_is_a_failure_not_an_exception(
    store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import raises ImportError
    exporter = MLflowMetricExporter()
    data = _collect(hw__energy=[(1.0, {"hw.id": "cpu"})])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert exporter.export(data) is MetricExportResult.FAILURE
        assert exporter.export(data) is MetricExportResult.FAILURE
    assert len(caplog.records) == 1
    assert "mlflow.tracking" in caplog.records[0].getMessage()


def test_bad_input_and_recovery(store: str, caplog: pytest.LogCaptureFixture) -> None:
    exporter = MLflowMetricExporter()
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert exporter.export(object()) is MetricExportResult.FAILURE  # type: ignore[arg-type]
    data = _collect(hw__energy=[(1.0, {"hw.id": "cpu"})])
    assert exporter.export(data) is MetricExportResult.SUCCESS
    assert exporter.force_flush(FLUSH_MS)
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not convert" in m for m in messages), messages
    assert any("works again" in m for m in messages), messages
    exporter.shutdown()


# ---------------------------------------------------------------------------- run summary
RUN_ATTRIBUTES: dict[str, Any] = {
    "hf_eco2ai.energy.joules": 155.9,
    "hf_eco2ai.energy.cpu.joules": 154.7,
    "hf_eco2ai.emissions.grams": 0.0024,
    "hf_eco2ai.energy.method": "ram-model,tdp-model",
    "hf_eco2ai.energy.extrapolated": False,
    "hf_eco2ai.grid.zone": "FR",
    "hf_eco2ai.grid.source": "table:owid@2023",
    "hf_eco2ai.pue": 1.0,
    "hf_eco2ai.global_step": 8,
    "hf_eco2ai.framework": "transformers",
    "hf_eco2ai.model.class": "BertForSequenceClassification",
    "hf_eco2ai.rank": 0,
    "service.other": "ignored",
}


def _run_span(provider: TracerProvider, name: str, attrs: dict[str, Any]) -> tuple[str, str]:
    tracer = provider.get_tracer("hf_eco2ai")
    with tracer.start_as_current_span(name, attributes=attrs) as span:
        ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def test_run_summary_mapping() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace_id, _ = _run_span(provider, "transformers.trainer.train", RUN_ATTRIBUTES)
    _run_span(provider, "transformers.trainer.epoch", RUN_ATTRIBUTES)
    epoch, run = sorted(memory.get_finished_spans(), key=lambda s: s.name)
    assert run_summary(epoch) is None
    summary = run_summary(run)
    assert summary is not None
    metrics = {p.key: p for p in summary.metrics}
    assert set(metrics) == {
        "hf_eco2ai.energy.joules",
        "hf_eco2ai.energy.cpu.joules",
        "hf_eco2ai.emissions.grams",
        "hf_eco2ai.global_step",
        "hf_eco2ai.rank",
    }
    assert {p.step for p in summary.metrics} == {8}
    assert summary.params == {
        "hf_eco2ai.energy.method": "ram-model,tdp-model",
        "hf_eco2ai.grid.zone": "FR",
        "hf_eco2ai.grid.source": "table:owid@2023",
        "hf_eco2ai.pue": "1.0",
        "hf_eco2ai.framework": "transformers",
        "hf_eco2ai.model.class": "BertForSequenceClassification",
    }
    assert summary.tags["hf_eco2ai.trace_id"] == trace_id
    assert summary.tags["hf_eco2ai.energy.extrapolated"] == "False"
    assert summary.tags["hf_eco2ai.status"] == "OK"
    assert "service.other" not in summary.tags


def test_processor_logs_run_totals_on_the_active_run(store: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(MLflowRunSummaryProcessor())
    with mlflow.start_run() as run:
        _run_span(provider, "transformers.trainer.train", RUN_ATTRIBUTES)
        # a second run in the same MLflow run with another zone: the param stays, a tag says
        trace_id, span_id = _run_span(
            provider, "lightning.trainer.fit", {**RUN_ATTRIBUTES, "hf_eco2ai.grid.zone": "DE"}
        )
        _run_span(provider, "transformers.trainer.evaluate", {"hf_eco2ai.energy.joules": 1.0})
    provider.shutdown()
    data = MlflowClient(store).get_run(run.info.run_id).data
    assert data.metrics["hf_eco2ai.energy.joules"] == pytest.approx(155.9)
    assert data.metrics["hf_eco2ai.emissions.grams"] == pytest.approx(0.0024)
    assert data.params["hf_eco2ai.energy.method"] == "ram-model,tdp-model"
    assert data.params["hf_eco2ai.grid.zone"] == "FR"
    assert data.tags["hf_eco2ai.grid.zone.latest"] == "DE"
    assert data.tags["hf_eco2ai.run_span"] == "lightning.trainer.fit"
    # the tags name the last run span's trace: the run links to it in Jaeger
    assert data.tags["hf_eco2ai.trace_id"] == trace_id
    assert data.tags["hf_eco2ai.span_id"] == span_id


def test_failed_run_span_is_tagged(store: str) -> None:
    processor = MLflowRunSummaryProcessor(experiment_name="failures")
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("hf_eco2ai")
    with tracer.start_as_current_span("transformers.trainer.train") as span:
        span.set_attribute("hf_eco2ai.energy.joules", 3.0)
        span.set_attribute("error.type", "Boom")
        span.set_status(Status(StatusCode.ERROR, "Boom: injected"))
    assert processor.force_flush(FLUSH_MS)
    run_id = processor.created_run_id
    assert run_id is not None
    provider.shutdown()
    run = MlflowClient(store).get_run(run_id)
    assert run.data.tags["hf_eco2ai.status"] == "ERROR"
    assert run.data.tags["error.type"] == "Boom"
    assert run.info.status == "FINISHED"


def test_span_exporter_behind_batch_processor(store: str) -> None:
    exporter = MLflowSpanExporter(experiment_name="spans")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _run_span(provider, "lightning.trainer.fit", RUN_ATTRIBUTES)
    provider.force_flush()
    assert exporter.force_flush(FLUSH_MS)
    run_id = exporter.created_run_id
    assert run_id is not None
    provider.shutdown()
    data = MlflowClient(store).get_run(run_id).data
    assert data.metrics["hf_eco2ai.energy.joules"] == pytest.approx(155.9)
    assert data.params["hf_eco2ai.grid.zone"] == "FR"


def test_metrics_and_span_exporters_share_one_created_run(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "shared")
    metrics = MLflowMetricExporter()
    spans = MLflowSpanExporter()
    assert metrics.export(_collect(hw__energy=[(1.0, {"hw.id": "cpu"})])).name == "SUCCESS"
    provider = TracerProvider()
    processor = BatchSpanProcessor(spans)
    provider.add_span_processor(processor)
    _run_span(provider, "transformers.trainer.train", RUN_ATTRIBUTES)
    provider.force_flush()
    assert metrics.force_flush(FLUSH_MS) and spans.force_flush(FLUSH_MS)
    assert spans.created_run_id == metrics.created_run_id is not None
    client = MlflowClient(store)
    metrics.shutdown()
    assert client.get_run(spans.created_run_id).info.status == "RUNNING"  # spans still hold it
    provider.shutdown()
    assert client.get_run(spans.created_run_id).info.status == "FINISHED"
    experiment = client.get_experiment_by_name("shared")
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_processor_with_unreachable_server_does_not_stall_training(
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    provider = TracerProvider()
    provider.add_span_processor(MLflowRunSummaryProcessor(tracking_uri=uri, timeout_s=0.5))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    t0 = time.monotonic()
    for _ in range(3):
        _run_span(provider, "transformers.trainer.train", RUN_ATTRIBUTES)
    provider.shutdown()
    assert time.monotonic() - t0 < 3.0
    assert len(caplog.records) == 1


# ---------------------------------------------------------------------------- entry points
def test_sdk_configurator_loads_the_entry_points() -> None:
    """What opentelemetry-instrument does with --metrics_exporter mlflow / --traces_exporter."""
    from opentelemetry.sdk._configuration import _import_exporters

    spans, metrics, _ = _import_exporters(["mlflow"], ["mlflow"], [])
    assert spans["mlflow"] is MLflowSpanExporter
    assert metrics["mlflow"] is MLflowMetricExporter
    # a push exporter (not a MetricReader): the configurator wraps it in a
    # PeriodicExportingMetricReader, and builds it without arguments
    assert issubclass(MLflowMetricExporter, MetricExporter)
    assert not issubclass(MLflowMetricExporter, MetricReader)
    assert issubclass(MLflowSpanExporter, SpanExporter)
    exporter = MLflowMetricExporter()
    exporter.shutdown()
    assert SpanExportResult.SUCCESS is MLflowSpanExporter().export([])


def test_span_exporter_flushing_after_the_metrics_exporter_ended_reuses_the_run(
    store: str,
) -> None:
    """At exit the MeterProvider may shut down before the last span batch is exported."""
    metrics = MLflowMetricExporter(experiment_name="order")
    assert metrics.export(_collect(hw__energy=[(1.0, {"hw.id": "cpu"})])).name == "SUCCESS"
    metrics.shutdown()
    client = MlflowClient(store)
    assert metrics.created_run_id is not None
    assert client.get_run(metrics.created_run_id).info.status == "FINISHED"
    spans = MLflowSpanExporter(experiment_name="order")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(spans))
    _run_span(provider, "transformers.trainer.train", RUN_ATTRIBUTES)
    provider.shutdown()
    assert spans.created_run_id == metrics.created_run_id
    run = client.get_run(metrics.created_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["hf_eco2ai.energy.joules"] == pytest.approx(155.9)
    experiment = client.get_experiment_by_name("order")
    assert len(client.search_runs([experiment.experiment_id])) == 1


# ---------------------------------------------------------------------------- start-up
@pytest.fixture
def slow_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """MLflow's start-up (import, client, store creation) blocks until the event is set."""
    from hf_eco2ai.exporters.mlflow.client import MlflowRuns as Runs

    release = threading.Event()
    real = Runs.connect

    def connect(self: Runs) -> None:
        assert release.wait(60), "the test never released the start-up"
        real(self)

    monkeypatch.setattr(Runs, "connect", connect)
    yield release
    release.set()


def test_exports_made_while_mlflow_starts_are_queued_and_written(
    store: str, slow_start: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that takes longer to start than the per-export timeout (importing MLflow and
    creating a sqlite schema took 10.6 s on a slow machine; the timeout is 10 s): the exports
    wait in line, nothing is reported as failed, and shutdown writes them all."""
    exporter = MLflowMetricExporter(experiment_name="slow-start")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for value in (1.0, 2.0, 3.0):
        data = _collect(hw__energy=[(value, {"hw.id": "cpu"})])
        # the caller's own bound (the periodic reader passes one): shorter than the start-up
        assert exporter.export(data, timeout_millis=50) is MetricExportResult.SUCCESS
    assert exporter.created_run_id is None  # nothing written yet: MLflow is still starting
    assert not exporter.force_flush(timeout_millis=50)  # still queued
    slow_start.set()
    exporter.shutdown()
    run_id = exporter.created_run_id
    assert run_id is not None
    client = MlflowClient(store)
    history = client.get_metric_history(run_id, "hw.energy.cpu")
    assert [m.value for m in history] == [1.0, 2.0, 3.0]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("still starting" in r.getMessage() for r in caplog.records)


def test_a_start_up_over_its_own_bound_is_reported_once(
    store: str, slow_start: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = MLflowMetricExporter(startup_timeout_s=0.2)
    data = _collect(hw__energy=[(1.0, {"hw.id": "cpu"})])
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert exporter.export(data, timeout_millis=50) is MetricExportResult.SUCCESS  # queued
    time.sleep(0.3)  # the start-up is now older than its bound
    assert exporter.export(data, timeout_millis=50) is MetricExportResult.FAILURE
    assert exporter.export(data, timeout_millis=50) is MetricExportResult.FAILURE
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "MLflow did not start within" in warnings[0]
    slow_start.set()
    exporter.force_flush(FLUSH_MS)  # the start-up ends; the next export goes through
    assert exporter.export(data) is MetricExportResult.SUCCESS
    assert any("works again" in r.getMessage() for r in caplog.records)
    exporter.shutdown()


# ---------------------------------------------------------------------------- budgets
def test_run_summary_logs_the_co2_budget_as_a_param() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hf_eco2ai.telemetry import attributes as a

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    budget = {a.BUDGET_CO2_GRAMS: 5.0, a.BUDGET_ENERGY_JOULES: 9e5, a.BUDGET_ACTION: "warn"}
    _run_span(provider, "transformers.trainer.train", {**RUN_ATTRIBUTES, **budget})
    (span,) = memory.get_finished_spans()
    summary = run_summary(span)
    assert summary is not None
    assert summary.params["hf_eco2ai.budget.co2.grams"] == "5.0"
    assert summary.params["hf_eco2ai.budget.energy.joules"] == "900000.0"
    assert summary.params["hf_eco2ai.budget.action"] == "warn"
    assert "hf_eco2ai.budget.co2.grams" not in {p.key for p in summary.metrics}


def test_the_co2_budget_of_a_real_run_becomes_an_mlflow_param(
    store: str, fake_devices: None, tmp_path: Path
) -> None:
    """The run span as the instrumented Trainer callback writes it, through the processor, into
    a real store. Would catch: the spans and the bridge spelling the budget key differently
    (it was ``budget.co2.grams`` in the spans, ``budget.emissions.grams`` in the bridge, so the
    budget became a metric instead of a param)."""
    from opentelemetry.sdk.metrics import MeterProvider as Meters
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_eco2ai import CarbonConfig, Eco2AICallback, HFEco2AIInstrumentor

    processor = MLflowRunSummaryProcessor(experiment_name="budgets")
    provider = TracerProvider()
    provider.add_span_processor(processor)
    meters = Meters()
    config = CarbonConfig(
        sample_interval=0.05, co2_budget=5.0, energy_budget=1e6, output_dir=str(tmp_path / "r")
    )
    instrumentor = HFEco2AIInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=meters, config=config)
    try:
        args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[])
        state, control = TrainerState(max_steps=2), TrainerControl()
        callback = Eco2AICallback(config)
        callback.on_train_begin(args, state, control)
        for step in (1, 2):
            state.global_step = step
            callback.on_step_end(args, state, control)
        callback.on_train_end(args, state, control)
        assert processor.force_flush(FLUSH_MS)
    finally:
        instrumentor.uninstrument()
        meters.shutdown()
    run_id = processor.created_run_id
    assert run_id is not None
    provider.shutdown()
    data = MlflowClient(store).get_run(run_id).data
    assert data.params["hf_eco2ai.budget.co2.grams"] == "5.0"
    assert data.params["hf_eco2ai.budget.energy.joules"] == "1000000.0"
    assert data.params["hf_eco2ai.budget.action"] == "warn"
    assert "hf_eco2ai.budget.co2.grams" not in data.metrics
