"""MLflow names for OpenTelemetry data: metric keys, MLflow's limits, metric points.

Nothing here imports MLflow; every function is pure.

Metric names (:func:`mlflow_metric_key`): the OpenTelemetry name, then the value of the data
point's ``hw.id`` (else ``hw.type``), characters MLflow refuses replaced by ``_``::

    hw.energy{hw.id=cpu, hw.type=cpu, …}             -> hw.energy.cpu
    hw.power{hw.id=GPU-8c1f…, hw.type=gpu, …}        -> hw.power.GPU-8c1f…
    hf_eco2ai.emissions{hw.type=memory}              -> hf_eco2ai.emissions.memory
    hf_eco2ai.training.steps{framework=transformers} -> hf_eco2ai.training.steps

Example:
    >>> mlflow_metric_key("hw.energy", {"hw.id": "cpu", "hw.type": "cpu", "hw.name": "EPYC"})
    'hw.energy.cpu'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import Gauge, MetricsData, Sum

from hf_eco2ai.telemetry.attributes import LOCAL_RANK, RANK, WORLD_SIZE
from hf_eco2ai.telemetry.names import METRICS

SCOPE = "hf_eco2ai"
REGISTRY_NAMES = frozenset(m.name for m in METRICS)
STEPS_METRIC = "hf_eco2ai.training.steps"
KEY_ATTRIBUTES = ("hw.id", "hw.type")
"""The first of these a data point has is appended to the metric name."""
IDENTITY_ATTRIBUTES = frozenset({RANK, LOCAL_RANK, WORLD_SIZE, "host.name"})
"""Same on every point of a process: never part of a key."""

# MLflow's limits (mlflow.utils.validation): keys, batch sizes, param/tag value lengths.
MAX_KEY_LENGTH = 250
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000

_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]")


def key_part(value: object) -> str:
    """``value`` as part of an MLflow key: refused characters and ``..`` become ``_``.

    >>> key_part("nvme0/x:1")
    'nvme0_x_1'
    """
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
    key = key_part(name)
    for attr in KEY_ATTRIBUTES:
        if attr in attributes:
            key = f"{key}.{key_part(attributes[attr])}"
            break
    return key[:MAX_KEY_LENGTH]


def _full_key(name: str, attributes: Mapping[str, object]) -> str:
    """The key with every non-identity attribute value (used when two points share a key)."""
    values = [key_part(v) for k, v in sorted(attributes.items()) if k not in IDENTITY_ATTRIBUTES]
    return ".".join([key_part(name), *values])[:MAX_KEY_LENGTH]


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
                    if metric.name == STEPS_METRIC:
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
