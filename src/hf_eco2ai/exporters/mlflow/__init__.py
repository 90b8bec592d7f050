"""MLflow bridge: hf-eco2ai's OpenTelemetry metrics and run totals in an MLflow run.

Two pieces, usable separately:

* :class:`MLflowMetricExporter`, an OpenTelemetry ``MetricExporter``, registered as the
  ``mlflow`` entry point of ``opentelemetry_metrics_exporter``, so::

      opentelemetry-instrument --metrics_exporter mlflow,otlp python train.py

  logs ``hw.energy``, ``hf_eco2ai.emissions`` … to MLflow next to the OTLP export.
* :class:`MLflowRunSummaryProcessor` (a ``SpanProcessor``) and :class:`MLflowSpanExporter` (the
  ``mlflow`` entry point of ``opentelemetry_traces_exporter``): when a run span ends, its totals
  go to the run: numbers as metrics, the configuration as params, the rest and the trace id as
  tags.

Which run: the explicit ``run_id``, else ``MLFLOW_RUN_ID``, else the run active in this process
(``mlflow.start_run()`` in any thread, e.g. by the Trainer's ``MLflowCallback``), else one run
this bridge creates (experiment from ``experiment_name``, ``MLFLOW_EXPERIMENT_NAME`` or
``MLFLOW_EXPERIMENT_ID``; named after ``OTEL_SERVICE_NAME``) and ends at shutdown. The tracking
server is ``tracking_uri`` or ``MLFLOW_TRACKING_URI``.

Telemetry never breaks or stalls training: MLflow (imported on first use) is only called on one
daemon thread per bridge. Starting MLflow (import, client, a local store's schema) has its own
bound (``OTEL_PYTHON_HF_ECO2AI_MLFLOW_STARTUP_TIMEOUT``, 120 s), during which calls are queued;
after that a caller waits at most ``timeout_s`` (``OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT``, 10 s)
and an export that finds the previous one still running returns ``FAILURE`` at once. A tracking
server that is down is logged once per outage, never raised.

The modules, one job each: :mod:`~hf_eco2ai.exporters.mlflow.keys` (MLflow names and limits),
:mod:`~hf_eco2ai.exporters.mlflow.summary` (a run span as metrics, params, tags),
:mod:`~hf_eco2ai.exporters.mlflow.worker` (the background thread, outage logging),
:mod:`~hf_eco2ai.exporters.mlflow.client` (MLflow calls, the target run),
:mod:`~hf_eco2ai.exporters.mlflow.bridge` (start-up, bounded waits, queue),
:mod:`~hf_eco2ai.exporters.mlflow.metric_exporter` and
:mod:`~hf_eco2ai.exporters.mlflow.span_exporter` (the OpenTelemetry faces).

Example:
    >>> mlflow_metric_key("hw.energy", {"hw.id": "cpu", "hw.type": "cpu", "hw.name": "EPYC"})
    'hw.energy.cpu'
    >>> exporter = MLflowMetricExporter(tracking_uri="sqlite:///mlflow.db", experiment_name="demo")
    >>> exporter.shutdown()
"""

from __future__ import annotations

from hf_eco2ai.exporters.mlflow.bridge import (
    DEFAULT_STARTUP_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    STARTUP_TIMEOUT_ENV,
    TIMEOUT_ENV,
)
from hf_eco2ai.exporters.mlflow.client import active_mlflow_run_id
from hf_eco2ai.exporters.mlflow.keys import MetricPoint, metric_points, mlflow_metric_key
from hf_eco2ai.exporters.mlflow.metric_exporter import MLflowMetricExporter
from hf_eco2ai.exporters.mlflow.span_exporter import (
    MLflowRunSummaryProcessor,
    MLflowSpanExporter,
)
from hf_eco2ai.exporters.mlflow.summary import PARAM_ATTRIBUTES, RunSummary, run_summary

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "PARAM_ATTRIBUTES",
    "STARTUP_TIMEOUT_ENV",
    "TIMEOUT_ENV",
    "MLflowMetricExporter",
    "MLflowRunSummaryProcessor",
    "MLflowSpanExporter",
    "MetricPoint",
    "RunSummary",
    "active_mlflow_run_id",
    "metric_points",
    "mlflow_metric_key",
    "run_summary",
]
