"""Exporters that carry hf-eco2ai's telemetry to back-ends OpenTelemetry has no exporter for.

* :mod:`hf_eco2ai.exporters.mlflow`: metrics into an MLflow run (the ``mlflow`` metrics exporter
  of ``opentelemetry-instrument``) and the run span's totals as MLflow params, tags and metrics.

Nothing here is imported by ``import hf_eco2ai``; MLflow itself is imported only when the first
data is sent.
"""
