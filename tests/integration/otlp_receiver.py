"""A real OTLP/gRPC receiver for integration tests.

A grpcio server built from ``opentelemetry-proto``'s collector service definitions (traces,
metrics and logs). Every ``Export*ServiceRequest`` that arrives is copied and stored under a
lock, so the test thread can read while the server threads write. Helpers flatten what arrived
into spans and metrics with their resource and scope, and decode OTLP attributes to plain
Python values.

Use it as a context manager::

    with OTLPReceiver() as receiver:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        ...
        spans = receiver.spans()

or through the :func:`otlp_receiver` fixture (import it into a ``conftest.py`` or a test module).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = [
    "OTLPReceiver",
    "ReceivedMetric",
    "ReceivedSpan",
    "any_value",
    "attributes",
    "free_port",
    "otlp_receiver",
]


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a plain Python value (None when unset)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    """A repeated ``KeyValue`` field as a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received, with its resource and instrumentation scope."""

    span: Span
    resource: dict[str, Any]
    scope: str

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def span_id(self) -> bytes:
        return self.span.span_id

    @property
    def parent_span_id(self) -> bytes:
        return self.span.parent_span_id

    @property
    def trace_id(self) -> bytes:
        return self.span.trace_id

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


@dataclass(frozen=True)
class ReceivedMetric:
    """One metric of one export, with its resource and instrumentation scope."""

    metric: Metric
    resource: dict[str, Any]
    scope: str

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def unit(self) -> str:
        return self.metric.unit

    @property
    def kind(self) -> str:
        """``gauge``, ``sum``, ``histogram``, ``exponential_histogram`` or ``summary``."""
        return self.metric.WhichOneof("data") or ""

    def points(self) -> list[Any]:
        """The data points of this metric (of whatever kind)."""
        kind = self.kind
        return list(getattr(self.metric, kind).data_points) if kind else []


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        copy = trace_service_pb2.ExportTraceServiceRequest()
        copy.CopyFrom(request)
        self._receiver._store(self._receiver._traces, copy)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        copy = metrics_service_pb2.ExportMetricsServiceRequest()
        copy.CopyFrom(request)
        self._receiver._store(self._receiver._metrics, copy)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        copy = logs_service_pb2.ExportLogsServiceRequest()
        copy.CopyFrom(request)
        self._receiver._store(self._receiver._logs, copy)
        return logs_service_pb2.ExportLogsServiceResponse()


class OTLPReceiver:
    """An OTLP/gRPC server on ``host`` (a free port unless ``port`` is given).

    Thread-safe: requests are stored under a lock and every accessor returns a snapshot list.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_workers: int = 4) -> None:
        self.host = host
        self._requested_port = port
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self._logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self._server: grpc.Server | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> OTLPReceiver:
        """Start serving; :attr:`port` and :attr:`endpoint` are valid afterwards."""
        if self._server is not None:
            return self
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self), server)
        port = server.add_insecure_port(f"{self.host}:{self._requested_port}")
        if not port:
            raise RuntimeError(f"could not bind {self.host}:{self._requested_port}")
        server.start()
        self._server = server
        self.port = port
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (idempotent); what was received stays readable."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://host:port``, the value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ storage
    def _store(self, bucket: list[Any], request: Any) -> None:
        with self._changed:
            bucket.append(request)
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self._traces.clear()
            self._metrics.clear()
            self._logs.clear()

    @property
    def trace_requests(self) -> list[trace_service_pb2.ExportTraceServiceRequest]:
        with self._lock:
            return list(self._traces)

    @property
    def metric_requests(self) -> list[metrics_service_pb2.ExportMetricsServiceRequest]:
        with self._lock:
            return list(self._metrics)

    @property
    def log_requests(self) -> list[logs_service_pb2.ExportLogsServiceRequest]:
        with self._lock:
            return list(self._logs)

    def wait_for(self, predicate: Callable[[OTLPReceiver], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked on every request); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.2))

    # ------------------------------------------------------------------ decoding
    def spans(self) -> list[ReceivedSpan]:
        """Every span received, in arrival order."""
        out = []
        for request in self.trace_requests:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend(ReceivedSpan(s, resource, ss.scope.name) for s in ss.spans)
        return out

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.name == name]

    def metrics(self) -> list[ReceivedMetric]:
        """Every metric of every export, in arrival order (one entry per metric per export)."""
        out = []
        for request in self.metric_requests:
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    out.extend(ReceivedMetric(m, resource, sm.scope.name) for m in sm.metrics)
        return out

    def metrics_named(self, name: str) -> list[ReceivedMetric]:
        return [m for m in self.metrics() if m.name == name]

    def metric_names(self) -> set[str]:
        return {m.name for m in self.metrics()}


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A started :class:`OTLPReceiver` on 127.0.0.1 (a free port), stopped afterwards."""
    with OTLPReceiver() as receiver:
        yield receiver
