"""Run spans' totals into an MLflow run: a span processor and a span exporter.

When a run span (``transformers.trainer.train``, ``lightning.trainer.fit``) ends, its totals go
to the run (see :func:`~hf_eco2ai.exporters.mlflow.summary.run_summary`): numbers as metrics,
the configuration as params, the rest and the trace id as tags (so the run links to its trace
in Jaeger).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from hf_eco2ai.exporters.mlflow.bridge import Bridge
from hf_eco2ai.exporters.mlflow.client import active_mlflow_run_id
from hf_eco2ai.exporters.mlflow.summary import RunSummary, run_summary


class _RunSummarySink:
    """What the run-summary processor and exporter share: the bridge to MLflow."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_id: str | None = None,
        run_name: str | None = None,
        timeout_s: float | None = None,
        startup_timeout_s: float | None = None,
    ) -> None:
        self._bridge = Bridge(
            "run summary",
            tracking_uri,
            experiment_name,
            run_id,
            run_name,
            timeout_s,
            startup_timeout_s,
        )

    @property
    def created_run_id(self) -> str | None:
        """The run this processor or exporter created (None when it logged to a given or active run)."""
        return self._bridge.runs.created_run_id

    def _log(self, summaries: Iterable[RunSummary], active: str | None) -> bool:
        todo = list(summaries)
        if not todo:
            return True
        runs = self._bridge.runs

        def log() -> None:
            run_id = runs.target(active)
            for summary in todo:
                runs.log_summary(run_id, summary)

        return self._bridge.call(log, self._bridge.timeout_s)

    def shutdown(self) -> None:
        """Write queued summaries, end the run this bridge created (if any); bounded."""
        self._bridge.shutdown(self._bridge.timeout_s)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait (bounded) for summaries queued while MLflow was starting."""
        return self._bridge.flush(timeout_millis / 1000)


class MLflowRunSummaryProcessor(_RunSummarySink, SpanProcessor):
    """Span processor: at the end of each run span, its totals go to the MLflow run.

    ``on_end`` runs in the training thread, so ``mlflow.active_run()`` there is the run the
    training script (or the Trainer's ``MLflowCallback``) started. It waits at most
    ``timeout_s`` for MLflow; a failure is logged once, never raised.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(MLflowRunSummaryProcessor(tracking_uri="sqlite:///m.db"))
        >>> provider.shutdown()
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Log the run span's totals (other spans are ignored)."""
        try:
            summary = run_summary(span)
        except Exception as exc:
            self._bridge.health.failed(f"could not read the span: {exc!r}", exc)
            return
        if summary is not None:
            self._log([summary], active_mlflow_run_id())


class MLflowSpanExporter(_RunSummarySink, SpanExporter):
    """Span exporter (``--traces_exporter mlflow``): run spans' totals to the MLflow run.

    The SDK runs it behind a ``BatchSpanProcessor``, on another thread: the active run is found
    with :func:`~hf_eco2ai.exporters.mlflow.client.active_mlflow_run_id`. Spans other than run
    spans are dropped (they are not MLflow data); keep an ``otlp`` traces exporter next to it
    for Jaeger.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Log every run span of the batch; ``FAILURE`` (never an exception) on error."""
        try:
            summaries = [s for s in map(run_summary, spans) if s is not None]
        except Exception as exc:
            self._bridge.health.failed(f"could not read the spans: {exc!r}", exc)
            return SpanExportResult.FAILURE
        ok = self._log(summaries, active_mlflow_run_id())
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE
