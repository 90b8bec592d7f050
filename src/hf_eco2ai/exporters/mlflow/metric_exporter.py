"""``MLflowMetricExporter``: hf-eco2ai's OpenTelemetry metrics into an MLflow run.

Registered as the ``mlflow`` entry point of ``opentelemetry_metrics_exporter``. The SDK's
configurator wraps it in a ``PeriodicExportingMetricReader`` (every
``OTEL_METRIC_EXPORT_INTERVAL`` ms, 60 s by default). Each export is one ``log_batch`` (chunked
at MLflow's 1000 metrics per call) with the data points' timestamps and, as step, the training
step count (``hf_eco2ai.training.steps``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from hf_eco2ai.exporters.mlflow.bridge import Bridge
from hf_eco2ai.exporters.mlflow.client import active_mlflow_run_id
from hf_eco2ai.exporters.mlflow.keys import metric_points


class MLflowMetricExporter(MetricExporter):
    """OpenTelemetry metric exporter that logs hf-eco2ai's metrics to an MLflow run.

    All arguments are optional (``opentelemetry-instrument`` builds it with none): MLflow's
    environment variables, ``OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT`` and
    ``OTEL_PYTHON_HF_ECO2AI_MLFLOW_STARTUP_TIMEOUT`` fill in.

    Args:
        tracking_uri: MLflow tracking URI (default ``MLFLOW_TRACKING_URI``, else MLflow's).
        experiment_name: experiment of a run this exporter creates (default
            ``MLFLOW_EXPERIMENT_NAME``, else ``MLFLOW_EXPERIMENT_ID``, else ``0``).
        run_id: always log to this run (default ``MLFLOW_RUN_ID``, else the active run).
        run_name: name of a run this exporter creates (default ``OTEL_SERVICE_NAME``).
        timeout_s: most seconds an export waits for MLflow (default 10).
        include_all: also log metrics of other instrumentations (default: hf-eco2ai's only).
        startup_timeout_s: most seconds MLflow may take to start: import, client, local store
            creation (default 120); exports made meanwhile are queued, not failed.

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        >>> exporter = MLflowMetricExporter(tracking_uri="sqlite:///mlflow.db")
        >>> reader = PeriodicExportingMetricReader(exporter, export_interval_millis=15_000)
        >>> provider = MeterProvider(metric_readers=[reader])  # then instrument(meter_provider=…)
        >>> provider.shutdown()
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_id: str | None = None,
        run_name: str | None = None,
        timeout_s: float | None = None,
        include_all: bool = False,
        startup_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self._bridge = Bridge(
            "metrics export",
            tracking_uri,
            experiment_name,
            run_id,
            run_name,
            timeout_s,
            startup_timeout_s,
        )
        self._include_all = include_all

    @property
    def created_run_id(self) -> str | None:
        """The run this exporter created (None when it logged to a given or active run)."""
        return self._bridge.runs.created_run_id

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        """Log one collection as one ``log_batch``; ``FAILURE`` (never an exception) on error."""
        try:
            points = metric_points(metrics_data, include_all=self._include_all)
        except Exception as exc:
            self._bridge.health.failed(f"could not convert the data: {exc!r}", exc)
            return MetricExportResult.FAILURE
        if not points:
            return MetricExportResult.SUCCESS
        active = active_mlflow_run_id()
        runs = self._bridge.runs

        def log() -> None:
            runs.log_metrics(runs.target(active), points)

        ok = self._bridge.call(log, timeout_millis / 1000)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Wait (bounded) for exports queued while MLflow was starting."""
        return self._bridge.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Write queued exports, end the run this exporter created (if any); bounded."""
        self._bridge.shutdown(timeout_millis / 1000)
