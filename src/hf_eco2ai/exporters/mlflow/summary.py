"""What a run span puts on an MLflow run: metrics, params and tags (pure; no MLflow import).

Which attribute is a param comes from the span-attribute registry
(:data:`hf_eco2ai.telemetry.attributes.MLFLOW_PARAMS`): the keys the spans write are the keys
read here, so a configuration attribute cannot silently become a tag.

Example:
    >>> from hf_eco2ai.telemetry.attributes import BUDGET_CO2_GRAMS
    >>> BUDGET_CO2_GRAMS in PARAM_ATTRIBUTES
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from hf_eco2ai.exporters.mlflow.keys import (
    MAX_KEY_LENGTH,
    MAX_PARAM_LENGTH,
    MAX_TAG_LENGTH,
    MetricPoint,
    key_part,
)
from hf_eco2ai.telemetry.attributes import GLOBAL_STEP, MLFLOW_PARAMS, PREFIX

RUN_SPAN_SUFFIXES = (".train", ".fit")
"""The run spans: ``transformers.trainer.train``, ``lightning.trainer.fit``."""

PARAM_ATTRIBUTES = MLFLOW_PARAMS
"""Span attributes logged as params (configuration; params cannot change once logged)."""

# Tags the bridge adds to the run (not span attributes).
TAG_RUN_SPAN = PREFIX + "run_span"
TAG_TRACE_ID = PREFIX + "trace_id"
TAG_SPAN_ID = PREFIX + "span_id"
TAG_STATUS = PREFIX + "status"


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
    step_value = attrs.get(GLOBAL_STEP, 0)
    step = int(step_value) if isinstance(step_value, int | float) else 0
    timestamp_ms = span.end_time // 1_000_000
    metrics: list[MetricPoint] = []
    params: dict[str, str] = {}
    tags: dict[str, str] = {TAG_RUN_SPAN: span.name}
    for key, value in sorted(attrs.items()):
        if not (key.startswith(PREFIX) or key == "error.type"):
            continue
        safe = key_part(key)[:MAX_KEY_LENGTH]
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
        tags[TAG_TRACE_ID] = format_trace_id(context.trace_id)
        tags[TAG_SPAN_ID] = format_span_id(context.span_id)
    error = span.status is not None and span.status.status_code is StatusCode.ERROR
    tags[TAG_STATUS] = "ERROR" if error else "OK"
    return RunSummary(metrics, params, tags)
