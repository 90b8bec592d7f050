"""MLflow bridge: hf-eco2ai's OpenTelemetry metrics and run totals in an MLflow run.

Two pieces, usable separately:

* :class:`MLflowMetricExporter`, an OpenTelemetry ``MetricExporter``, registered as the
  ``mlflow`` entry point of ``opentelemetry_metrics_exporter``. The SDK's configurator wraps it in
  a ``PeriodicExportingMetricReader`` (every ``OTEL_METRIC_EXPORT_INTERVAL`` ms, 60 s by
  default), so::

      opentelemetry-instrument --metrics_exporter mlflow,otlp python train.py

  logs ``hw.energy``, ``hf_eco2ai.emissions`` … to MLflow next to the OTLP export. Each export is
  one ``log_batch`` (chunked at MLflow's 1000 metrics per call) with the data points'
  timestamps and, as step, the training step count (``hf_eco2ai.training.steps``).
* :class:`MLflowRunSummaryProcessor` (a ``SpanProcessor``) and :class:`MLflowSpanExporter` (the
  ``mlflow`` entry point of ``opentelemetry_traces_exporter``): when a run span
  (``transformers.trainer.train``, ``lightning.trainer.fit``) ends, its totals go to the run:
  numbers as metrics (``hf_eco2ai.energy.joules``, ``hf_eco2ai.emissions.grams`` …), the
  configuration as params (``hf_eco2ai.energy.method``, ``hf_eco2ai.grid.zone``, PUE …), the
  rest and the trace id as tags (so the run links to its trace in Jaeger).

Which run: the explicit ``run_id``, else ``MLFLOW_RUN_ID``, else the run active in this process
(``mlflow.start_run()`` in any thread, e.g. by the Trainer's ``MLflowCallback``), else one run
this bridge creates (experiment from ``experiment_name``, ``MLFLOW_EXPERIMENT_NAME`` or
``MLFLOW_EXPERIMENT_ID``; named after ``OTEL_SERVICE_NAME``) and ends at shutdown. The tracking
server is ``tracking_uri`` or ``MLFLOW_TRACKING_URI``.

Telemetry never breaks or stalls training: MLflow (imported on first use) is only called on one
daemon thread of this module; callers wait at most ``timeout_s`` (``OTEL_PYTHON_HF_ECO2AI_
MLFLOW_TIMEOUT``, 10 s by default) and an export that finds the previous one still running
returns ``FAILURE`` at once (metrics are cumulative: the next export carries the totals). A
tracking server that is down is logged once per outage, never raised.

Metric names (:func:`mlflow_metric_key`): the OpenTelemetry name, then the value of the data
point's ``hw.id`` (else ``hw.type``), characters MLflow refuses replaced by ``_``::

    hw.energy{hw.id=cpu, hw.type=cpu, …}             -> hw.energy.cpu
    hw.power{hw.id=GPU-8c1f…, hw.type=gpu, …}        -> hw.power.GPU-8c1f…
    hf_eco2ai.emissions{hw.type=memory}              -> hf_eco2ai.emissions.memory
    hf_eco2ai.training.steps{framework=transformers} -> hf_eco2ai.training.steps

Example:
    >>> mlflow_metric_key("hw.energy", {"hw.id": "cpu", "hw.type": "cpu", "hw.name": "EPYC"})
    'hw.energy.cpu'
    >>> exporter = MLflowMetricExporter(tracking_uri="sqlite:///mlflow.db", experiment_name="demo")
    >>> exporter.shutdown()
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import re
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import (
    Gauge,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from hf_eco2ai.telemetry.names import METRICS

__all__ = [
    "MLflowMetricExporter",
    "MLflowRunSummaryProcessor",
    "MLflowSpanExporter",
    "active_mlflow_run_id",
    "mlflow_metric_key",
    "run_summary",
]

_LOG = logging.getLogger(__name__)

TIMEOUT_ENV = "OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT"
"""Seconds a caller waits for MLflow at most (default 10)."""
DEFAULT_TIMEOUT_S = 10.0

SCOPE = "hf_eco2ai"
REGISTRY_NAMES = frozenset(m.name for m in METRICS)
KEY_ATTRIBUTES = ("hw.id", "hw.type")
"""The first of these a data point has is appended to the metric name."""
IDENTITY_ATTRIBUTES = frozenset(
    {"hf_eco2ai.rank", "hf_eco2ai.local_rank", "hf_eco2ai.world_size", "host.name"}
)
"""Same on every point of a process: never part of a key."""
RUN_SPAN_SUFFIXES = (".train", ".fit")

# MLflow's limits (mlflow.utils.validation): keys, batch sizes, param/tag value lengths.
MAX_KEY_LENGTH = 250
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000

# Span attributes logged as params (configuration; params cannot change once logged).
PARAM_ATTRIBUTES = frozenset(
    {
        "hf_eco2ai.energy.method",
        "hf_eco2ai.grid.zone",
        "hf_eco2ai.grid.source",
        "hf_eco2ai.pue",
        "hf_eco2ai.framework",
        "hf_eco2ai.model.class",
        "hf_eco2ai.model.parameters",
        "hf_eco2ai.precision",
        "hf_eco2ai.max_steps",
        "hf_eco2ai.max_epochs",
        "hf_eco2ai.num_train_epochs",
        "hf_eco2ai.per_device_batch_size",
        "hf_eco2ai.gradient_accumulation_steps",
        "hf_eco2ai.accumulate_grad_batches",
        "hf_eco2ai.num_devices",
        "hf_eco2ai.num_nodes",
        "hf_eco2ai.world_size",
        "hf_eco2ai.lightning.strategy",
        "hf_eco2ai.budget.action",
        "hf_eco2ai.budget.energy.joules",
        "hf_eco2ai.budget.emissions.grams",
    }
)

_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]")
_T = TypeVar("_T")


# =========================================================================== names
def _key_part(value: object) -> str:
    text = _BAD_KEY_CHARS.sub("_", str(value)).strip(" ")
    return text.replace("..", "_") or "_"


def mlflow_metric_key(name: str, attributes: Mapping[str, object]) -> str:
    """The MLflow metric key of one data point: name + ``hw.id`` (else ``hw.type``) value.

    Characters MLflow refuses (anything but letters, digits, ``_ . - /`` and space; ``/`` is
    replaced too, it would read as a path) become ``_``; keys are cut at 250 characters.

    >>> mlflow_metric_key("hf_eco2ai.emissions", {"hw.type": "gpu"})
    'hf_eco2ai.emissions.gpu'
    >>> mlflow_metric_key("hw.power", {"hw.id": "nvme0/x:1", "hw.type": "gpu"})
    'hw.power.nvme0_x_1'
    >>> mlflow_metric_key("hf_eco2ai.training.steps", {"hf_eco2ai.framework": "transformers"})
    'hf_eco2ai.training.steps'
    """
    key = _key_part(name)
    for attr in KEY_ATTRIBUTES:
        if attr in attributes:
            key = f"{key}.{_key_part(attributes[attr])}"
            break
    return key[:MAX_KEY_LENGTH]


def _full_key(name: str, attributes: Mapping[str, object]) -> str:
    """The key with every non-identity attribute value (used when two points share a key)."""
    values = [_key_part(v) for k, v in sorted(attributes.items()) if k not in IDENTITY_ATTRIBUTES]
    return ".".join([_key_part(name), *values])[:MAX_KEY_LENGTH]


@dataclass(frozen=True)
class MetricPoint:
    """One value for MLflow: key, value, timestamp (ms since the epoch), step."""

    key: str
    value: float
    timestamp_ms: int
    step: int


def metric_points(
    metrics_data: MetricsData, *, include_all: bool = False, step: int | None = None
) -> list[MetricPoint]:
    """Our numeric data points (sums and gauges) as MLflow metric points.

    Only hf-eco2ai's metrics (scope ``hf_eco2ai`` or a registry name) unless ``include_all``.
    ``step`` defaults to the exported ``hf_eco2ai.training.steps`` total (0 before training).
    """
    raw: list[tuple[str, Mapping[str, object], float, int]] = []
    steps = 0
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            ours = scope_metrics.scope.name == SCOPE
            for metric in scope_metrics.metrics:
                if not (include_all or ours or metric.name in REGISTRY_NAMES):
                    continue
                if not isinstance(metric.data, Sum | Gauge):
                    continue
                for point in metric.data.data_points:
                    value = float(point.value)
                    if not math.isfinite(value):
                        continue
                    attrs: Mapping[str, object] = dict(point.attributes or {})
                    raw.append((metric.name, attrs, value, point.time_unix_nano // 1_000_000))
                    if metric.name == "hf_eco2ai.training.steps":
                        steps += int(value)
    if step is None:
        step = steps
    keys = [mlflow_metric_key(name, attrs) for name, attrs, _, _ in raw]
    seen: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for key, (_, attrs, _, _) in zip(keys, raw, strict=True):
        seen.setdefault(key, set()).add(tuple(sorted((k, str(v)) for k, v in attrs.items())))
    points = []
    for key, (name, attrs, value, ts) in zip(keys, raw, strict=True):
        if len(seen[key]) > 1:  # two different points would share a key: spell them out
            key = _full_key(name, attrs)
        points.append(MetricPoint(key, value, ts, step))
    return points


# =========================================================================== run lookup
def active_mlflow_run_id() -> str | None:
    """The MLflow run active in this process, in any thread; None when none (never raises).

    ``mlflow.active_run()`` is thread-local since MLflow 2.x, and exporters run on their own
    threads, so the other threads' run stacks are read too (the main thread's first). MLflow is
    not imported here: when the program never imported it, no run can be active.
    """
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None:
        return None
    try:
        run = fluent.active_run()
        if run is not None:
            return str(run.info.run_id)
        stacks: list[Any] = []
        holder = getattr(fluent, "_active_run_stack", None)
        if isinstance(holder, list):  # older MLflow: one process-wide stack
            stacks.append(holder)
        elif holder is not None and hasattr(holder, "get_all_thread_values"):
            by_thread: dict[int, Any] = dict(holder.get_all_thread_values())
            main = threading.main_thread().ident
            if main in by_thread:
                stacks.append(by_thread.pop(main))
            stacks.extend(by_thread.values())
        for stack in stacks:
            if stack:
                return str(stack[-1].info.run_id)
    except Exception:
        _LOG.debug("hf-eco2ai: could not read MLflow's active run", exc_info=True)
    return None


def _env_timeout(default: float = DEFAULT_TIMEOUT_S) -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        _LOG.warning("hf-eco2ai: %s=%r is not a number; using %s s", TIMEOUT_ENV, raw, default)
        return default
    return min(max(value, 0.1), 600.0)


# =========================================================================== worker
WORKER_THREAD_PREFIX = "hf-eco2ai-mlflow-"


class _QuietRetries(logging.Filter):
    """Drop urllib3's per-retry warnings raised on our worker threads.

    While a tracking server is down, MLflow's HTTP client retries each request several times
    and urllib3 warns at every retry; the bridge reports the outage once itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.threadName is not None
            and record.threadName.startswith(WORKER_THREAD_PREFIX)
            and record.levelno <= logging.WARNING
        )


_QUIET = _QuietRetries()


def _quiet_http_retries() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)


class _Worker:
    """One daemon thread that runs the MLflow calls of one bridge, in order.

    A daemon thread: a tracking server that never answers cannot keep the process alive.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(RuntimeError("the MLflow bridge is shut down"))
                return future
            self._jobs.append((fn, future))
            if self._thread is None:
                _quiet_http_retries()
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if not self._jobs:
                    return
                fn, future = self._jobs.pop(0)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the waiting caller, never raised here
                future.set_exception(exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()


@dataclass
class _Health:
    """Warn once when MLflow starts failing, say when it recovers; debug in between."""

    what: str
    failing: bool = False
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self) -> None:
        with self.lock:
            was, self.failing = self.failing, False
            count, self.failures = self.failures, 0
        if was:
            _LOG.info("hf-eco2ai: %s to MLflow works again (%d attempts failed)", self.what, count)

    def failed(self, reason: str, exc: BaseException | None = None) -> None:
        with self.lock:
            first = not self.failing
            self.failing = True
            self.failures += 1
        if first:
            _LOG.warning(
                "hf-eco2ai: %s to MLflow failed (%s); training goes on, retrying quietly",
                self.what,
                reason,
            )
        else:
            _LOG.debug("hf-eco2ai: %s to MLflow failed again (%s)", self.what, reason)
        if exc is not None:  # the traceback is for whoever turns on debug logging
            _LOG.debug(
                "hf-eco2ai: %s failure", self.what, exc_info=(type(exc), exc, exc.__traceback__)
            )


# =========================================================================== MLflow access
# Runs created by the bridges of this process, shared: `--metrics_exporter mlflow` and
# `--traces_exporter mlflow` log to one run, whichever shuts down first. MLflow accepts data
# for a FINISHED run; the last bridge to shut down ends it (again). Key: (tracking URI,
# experiment, run name).
_CREATED_LOCK = threading.Lock()
_CREATED: dict[tuple[str, str, str], list[Any]] = {}  # key -> [run_id, number of holders]


class _MlflowRuns:
    """Tracking client and target run, used on the worker thread only."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment_name: str | None,
        run_id: str | None,
        run_name: str | None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_id = run_id
        self.run_name = run_name
        self.created_run_id: str | None = None
        self._created_key: tuple[str, str, str] | None = None
        self._client: Any = None
        self.entities: Any = None

    def probe(self, timeout_s: float) -> None:
        """Fail fast when an HTTP tracking server does not accept connections.

        MLflow's own client retries a refused connection for minutes; a TCP connect that fails
        (at once when refused, within ``timeout_s`` otherwise) ends the attempt instead.
        """
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout_s):
                pass
        except OSError as exc:
            raise ConnectionError(
                f"tracking server {parts.hostname}:{port} unreachable: {exc}"
            ) from exc

    def client(self) -> Any:
        if self._client is None:
            tracking = importlib.import_module("mlflow.tracking")
            self.entities = importlib.import_module("mlflow.entities")
            self._client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment(self) -> str:
        return (
            self.experiment_name
            or os.environ.get("MLFLOW_EXPERIMENT_NAME")
            or "id:" + os.environ.get("MLFLOW_EXPERIMENT_ID", "0")
        )

    def _experiment_id(self, client: Any) -> str:
        experiment = self._experiment()
        if experiment.startswith("id:"):
            return experiment[3:]
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(experiment))

    def target(self, active_run_id: str | None) -> str:
        """The run to log to; creates one only when no run is given or active."""
        explicit = self.run_id or os.environ.get("MLFLOW_RUN_ID")
        if explicit:
            return explicit
        if active_run_id:
            return active_run_id
        if self.created_run_id is None:
            client = self.client()
            name = self.run_name or os.environ.get("OTEL_SERVICE_NAME") or "hf-eco2ai"
            uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
            key = (uri, self._experiment(), name)
            with _CREATED_LOCK:
                entry = _CREATED.get(key)
            if entry is None:  # create outside the lock: a hung server must not block others
                run = client.create_run(
                    self._experiment_id(client),
                    run_name=name,
                    tags={"hf_eco2ai.created_by": "hf-eco2ai MLflow bridge"},
                )
                mine = str(run.info.run_id)
                with _CREATED_LOCK:
                    entry = _CREATED.setdefault(key, [mine, 0])
                if entry[0] == mine:
                    _LOG.info("hf-eco2ai: logging to new MLflow run %s (%s)", mine, name)
                else:  # another bridge created one meanwhile: use that one
                    client.delete_run(mine)
            with _CREATED_LOCK:
                entry[1] += 1
            self.created_run_id = str(entry[0])
            self._created_key = key
        return self.created_run_id

    def log_metrics(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        client = self.client()
        metric = self.entities.Metric
        for start in range(0, len(points), MAX_METRICS_PER_BATCH):
            chunk = [
                metric(p.key, p.value, p.timestamp_ms, p.step)
                for p in points[start : start + MAX_METRICS_PER_BATCH]
            ]
            client.log_batch(run_id, metrics=chunk, synchronous=True)

    def log_summary(self, run_id: str, summary: RunSummary) -> None:
        client = self.client()
        entities = self.entities
        existing = dict(client.get_run(run_id).data.params)
        params = {}
        tags = dict(summary.tags)
        for key, value in summary.params.items():
            if key in existing and existing[key] != value:
                # params are immutable in MLflow: a second run in the same MLflow run keeps the
                # first value as param and records its own as a tag
                tags[f"{key}.latest"] = value
            elif key not in existing:
                params[key] = value
        self.log_metrics(run_id, summary.metrics)
        param_items = [entities.Param(k, v) for k, v in params.items()]
        tag_items = [entities.RunTag(k, v) for k, v in tags.items()]
        for start in range(0, max(len(param_items), len(tag_items)), MAX_PARAMS_TAGS_PER_BATCH):
            end = start + MAX_PARAMS_TAGS_PER_BATCH
            client.log_batch(
                run_id, params=param_items[start:end], tags=tag_items[start:end], synchronous=True
            )

    def end_created_run(self) -> None:
        """Release the created run; the last bridge holding it ends it (FINISHED)."""
        if self._created_key is None:
            return
        with _CREATED_LOCK:
            entry = _CREATED.get(self._created_key)
            last = entry is not None and entry[1] <= 1
            if entry is not None:
                # the entry stays: a bridge that starts logging later (a span exporter flushing
                # at exit after the metrics exporter ended) reuses the run, and ends it again
                entry[1] -= 1
            self._created_key = None
        if last and self.created_run_id is not None:
            self.client().set_terminated(self.created_run_id, "FINISHED")


class _Bridge:
    """What the exporters and the processor share: target run, worker, bounded waits, health."""

    def __init__(
        self,
        what: str,
        tracking_uri: str | None,
        experiment_name: str | None,
        run_id: str | None,
        run_name: str | None,
        timeout_s: float | None,
    ) -> None:
        self.runs = _MlflowRuns(tracking_uri, experiment_name, run_id, run_name)
        self.timeout_s = _env_timeout() if timeout_s is None else timeout_s
        self.worker = _Worker(WORKER_THREAD_PREFIX + what.split()[0])
        self.health = _Health(what)
        self._inflight: Future[Any] | None = None
        self._lock = threading.Lock()
        self.shut_down = False

    def call(self, fn: Callable[[], Any], timeout_s: float) -> bool:
        """Run ``fn`` on the worker; True when it finished without error within ``timeout_s``."""
        with self._lock:
            if self.shut_down:
                return False
            if self._inflight is not None and not self._inflight.done():
                self.health.failed("the previous call has not returned yet")
                return False
            probe_s = min(2.0, self.timeout_s)

            def job() -> Any:
                self.runs.probe(probe_s)
                return fn()

            future = self._inflight = self.worker.submit(job)
        try:
            future.result(timeout=max(0.0, min(timeout_s, self.timeout_s)))
        except FutureTimeout:
            self.health.failed(f"no answer within {min(timeout_s, self.timeout_s):.1f} s")
            return False
        except Exception as exc:
            self.health.failed(f"{type(exc).__name__}: {exc}"[:300], exc)
            return False
        self.health.ok()
        return True

    def shutdown(self, timeout_s: float) -> None:
        """End the run this bridge created (bounded), then stop the worker."""
        with self._lock:
            inflight = self._inflight
        if inflight is not None and not inflight.done():
            # give a call in flight a moment to finish; its outcome was already reported
            with contextlib.suppress(Exception):
                inflight.result(timeout=min(timeout_s, 1.0))
        if self.runs.created_run_id is not None and (inflight is None or inflight.done()):
            self.call(self.runs.end_created_run, timeout_s)
        with self._lock:
            self.shut_down = True
        self.worker.close()


# =========================================================================== metrics
class MLflowMetricExporter(MetricExporter):
    """OpenTelemetry metric exporter that logs hf-eco2ai's metrics to an MLflow run.

    All arguments are optional (``opentelemetry-instrument`` builds it with none): MLflow's
    environment variables and ``OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT`` fill in.

    Args:
        tracking_uri: MLflow tracking URI (default ``MLFLOW_TRACKING_URI``, else MLflow's).
        experiment_name: experiment of a run this exporter creates (default
            ``MLFLOW_EXPERIMENT_NAME``, else ``MLFLOW_EXPERIMENT_ID``, else ``0``).
        run_id: always log to this run (default ``MLFLOW_RUN_ID``, else the active run).
        run_name: name of a run this exporter creates (default ``OTEL_SERVICE_NAME``).
        timeout_s: most seconds an export waits for MLflow (default 10).
        include_all: also log metrics of other instrumentations (default: hf-eco2ai's only).

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
    ) -> None:
        super().__init__()
        self._bridge = _Bridge(
            "metrics export", tracking_uri, experiment_name, run_id, run_name, timeout_s
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
        """Nothing is buffered: every export is sent when it is made."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """End the run this exporter created (if any), bounded by the timeout."""
        self._bridge.shutdown(timeout_millis / 1000)


# =========================================================================== spans
@dataclass
class RunSummary:
    """What one run span puts on the MLflow run."""

    metrics: list[MetricPoint]
    params: dict[str, str]
    tags: dict[str, str]


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def run_summary(span: ReadableSpan) -> RunSummary | None:
    """The MLflow metrics, params and tags of a run span (None for any other span).

    Numeric ``hf_eco2ai.*`` attributes become metrics (step = ``hf_eco2ai.global_step``),
    configuration attributes (:data:`PARAM_ATTRIBUTES`) params, the other ``hf_eco2ai.*``
    attributes tags, plus ``hf_eco2ai.trace_id`` / ``hf_eco2ai.span_id`` / ``hf_eco2ai.status``.
    """
    if not span.name.endswith(RUN_SPAN_SUFFIXES) or span.end_time is None:
        return None
    attrs = dict(span.attributes or {})
    step_value = attrs.get("hf_eco2ai.global_step", 0)
    step = int(step_value) if isinstance(step_value, int | float) else 0
    timestamp_ms = span.end_time // 1_000_000
    metrics: list[MetricPoint] = []
    params: dict[str, str] = {}
    tags: dict[str, str] = {"hf_eco2ai.run_span": span.name}
    for key, value in sorted(attrs.items()):
        if not (key.startswith("hf_eco2ai.") or key == "error.type"):
            continue
        safe = _key_part(key)[:MAX_KEY_LENGTH]
        if key in PARAM_ATTRIBUTES:
            params[safe] = _clip(str(value), MAX_PARAM_LENGTH)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                metrics.append(MetricPoint(safe, float(value), timestamp_ms, step))
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
            tags[safe] = _clip(text, MAX_TAG_LENGTH)
    context = span.get_span_context()
    if context is not None and context.is_valid:
        tags["hf_eco2ai.trace_id"] = format_trace_id(context.trace_id)
        tags["hf_eco2ai.span_id"] = format_span_id(context.span_id)
    tags["hf_eco2ai.status"] = (
        "ERROR" if span.status is not None and span.status.status_code is StatusCode.ERROR else "OK"
    )
    return RunSummary(metrics, params, tags)


class _SummaryLogger:
    def __init__(self, bridge: _Bridge) -> None:
        self.bridge = bridge

    def log(self, summaries: Iterable[RunSummary], active: str | None, timeout_s: float) -> bool:
        todo = list(summaries)
        if not todo:
            return True
        runs = self.bridge.runs

        def log() -> None:
            run_id = runs.target(active)
            for summary in todo:
                runs.log_summary(run_id, summary)

        return self.bridge.call(log, timeout_s)


class _RunSummarySink:
    """What the run-summary processor and exporter share: the bridge to MLflow and its logger."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_id: str | None = None,
        run_name: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._bridge = _Bridge(
            "run summary", tracking_uri, experiment_name, run_id, run_name, timeout_s
        )
        self._logger = _SummaryLogger(self._bridge)

    @property
    def created_run_id(self) -> str | None:
        """The run this processor or exporter created (None when it logged to a given or active run)."""
        return self._bridge.runs.created_run_id


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
            self._logger.log([summary], active_mlflow_run_id(), self._bridge.timeout_s)

    def shutdown(self) -> None:
        """End the run this processor created (if any)."""
        self._bridge.shutdown(self._bridge.timeout_s)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered."""
        return True


class MLflowSpanExporter(_RunSummarySink, SpanExporter):
    """Span exporter (``--traces_exporter mlflow``): run spans' totals to the MLflow run.

    The SDK runs it behind a ``BatchSpanProcessor``, on another thread: the active run is found
    with :func:`active_mlflow_run_id`. Spans other than run spans are dropped (they are not
    MLflow data); keep an ``otlp`` traces exporter next to it for Jaeger.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Log every run span of the batch; ``FAILURE`` (never an exception) on error."""
        try:
            summaries = [s for s in map(run_summary, spans) if s is not None]
        except Exception as exc:
            self._bridge.health.failed(f"could not read the spans: {exc!r}", exc)
            return SpanExportResult.FAILURE
        ok = self._logger.log(summaries, active_mlflow_run_id(), self._bridge.timeout_s)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """End the run this exporter created (if any)."""
        self._bridge.shutdown(self._bridge.timeout_s)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered."""
        return True
