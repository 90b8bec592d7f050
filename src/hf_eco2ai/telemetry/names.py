"""The single registry of metric names, instruments, units and descriptions.

Instruments are created from :data:`METRICS` only, and the docs' metric reference is generated
from it too (``python -m hf_eco2ai.telemetry.names``), so names cannot drift.

Example:
    >>> spec = METRICS_BY_KEY["hw_energy"]
    >>> spec.name, spec.unit, spec.prometheus
    ('hw.energy', 'J', 'hw_energy_joules_total')
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

OBSERVABLE_COUNTER = "ObservableCounter"
OBSERVABLE_GAUGE = "ObservableGauge"
OBSERVABLE_UP_DOWN_COUNTER = "ObservableUpDownCounter"

# How OpenTelemetry units become Prometheus name suffixes. Both renderers below share these
# tables (opentelemetry-exporter-prometheus copied them from the Collector's translator).
_UNIT_SUFFIXES = {
    "s": "seconds",
    "ms": "milliseconds",
    "By": "bytes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "1": "",
    "%": "percent",
}
_PER_UNIT_SUFFIXES = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
_NOT_NAME_CHARS = re.compile(r"[^a-zA-Z0-9:]+")
_ANNOTATION = re.compile(r"{.*}")


def _python_exporter_unit(unit: str) -> str:
    """The unit suffix opentelemetry-exporter-prometheus renders (its ``map_unit``)."""
    unit = _ANNOTATION.sub("", unit)
    if unit in _UNIT_SUFFIXES:
        return _UNIT_SUFFIXES[unit]
    top, sep, bottom = unit.partition("/")
    bottom = _NOT_NAME_CHARS.sub("_", bottom)
    if sep and bottom:
        top = _NOT_NAME_CHARS.sub("_", top)
        top = _UNIT_SUFFIXES.get(top, top)
        bottom = _PER_UNIT_SUFFIXES.get(bottom, bottom)
        return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    # "J/{sample}" ends up here as "J/": the exporter keeps the raw "J" (no "joules").
    return _NOT_NAME_CHARS.sub("_", unit).strip("_")


def _otlp_translator_units(unit: str) -> list[str]:
    """The unit tokens of the Collector's / Prometheus' OTLP translator (``otlptranslator``)."""
    main, sep, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    tokens = []
    if main and "{" not in main and "}" not in main:
        tokens.append(_NOT_NAME_CHARS.sub("_", _UNIT_SUFFIXES.get(main, main)).strip("_"))
    if sep and per and "{" not in per and "}" not in per:
        tokens.append(
            "per_" + _NOT_NAME_CHARS.sub("_", _PER_UNIT_SUFFIXES.get(per, per)).strip("_")
        )
    return [t for t in tokens if t]


HW_ATTRS = ("hw.id", "hw.type", "hw.name", "hw.vendor", "hf_eco2ai.measurement.method")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its OpenTelemetry name, instrument kind, unit, description and attributes."""

    key: str
    name: str
    instrument: str
    unit: str
    description: str
    attributes: tuple[str, ...]

    @property
    def prometheus(self) -> str:
        """The name opentelemetry-exporter-prometheus renders (``OTEL_METRICS_EXPORTER=prometheus``).

        Checked against the real exporter by ``tests/integration/test_prometheus.py``.
        """
        name = _NOT_NAME_CHARS.sub("_", self.name)
        suffix = _python_exporter_unit(self.unit)
        if suffix and not name.endswith("_" + suffix):
            name = f"{name}_{suffix}"
        if self.instrument == OBSERVABLE_COUNTER:
            name += "_total"
        return name

    @property
    def prometheus_otlp(self) -> str:
        """The name the Collector's ``prometheus`` exporter and Prometheus' OTLP receiver render.

        Both use Prometheus' ``otlptranslator`` (strategy ``UnderscoreEscapingWithSuffixes``).
        It differs from :attr:`prometheus` for unit ``1`` gauges (``_ratio``) and for
        ``J/{sample}`` (``_joules`` where the Python exporter writes ``_J``).
        """
        tokens = [t for t in _NOT_NAME_CHARS.split(self.name) if t]
        for unit_token in _otlp_translator_units(self.unit):
            if unit_token not in tokens:
                tokens.append(unit_token)
        if self.instrument == OBSERVABLE_COUNTER:
            tokens = [t for t in tokens if t != "total"] + ["total"]
        if self.unit == "1" and self.instrument == OBSERVABLE_GAUGE:
            tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
        return "_".join(tokens)


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "hw_energy",
        "hw.energy",
        OBSERVABLE_COUNTER,
        "J",
        "Energy the device drew since measurement started, every process on it (host scope; no PUE).",
        HW_ATTRS,
    ),
    MetricSpec(
        "hw_power",
        "hw.power",
        OBSERVABLE_GAUGE,
        "W",
        "Instantaneous power of the device at the last sample.",
        HW_ATTRS,
    ),
    MetricSpec(
        "hw_gpu_utilization",
        "hw.gpu.utilization",
        OBSERVABLE_GAUGE,
        "1",
        "Fraction of time the GPU was busy during the last sample period.",
        ("hw.id", "hw.name", "hw.vendor"),
    ),
    MetricSpec(
        "hw_gpu_memory_usage",
        "hw.gpu.memory.usage",
        OBSERVABLE_UP_DOWN_COUNTER,
        "By",
        "GPU memory in use.",
        ("hw.id", "hw.name", "hw.vendor"),
    ),
    MetricSpec(
        "hw_gpu_memory_limit",
        "hw.gpu.memory.limit",
        OBSERVABLE_UP_DOWN_COUNTER,
        "By",
        "GPU memory available.",
        ("hw.id", "hw.name", "hw.vendor"),
    ),
    MetricSpec(
        "energy",
        "hf_eco2ai.energy",
        OBSERVABLE_COUNTER,
        "J",
        "Energy of this job (its process tree's share of each device: job scope), PUE applied, by device type.",
        ("hw.type",),
    ),
    MetricSpec(
        "emissions",
        "hf_eco2ai.emissions",
        OBSERVABLE_COUNTER,
        "g",
        "Emissions of this job in grams CO2e (job-scope energy x PUE x grid intensity, integrated), by device type.",
        ("hw.type",),
    ),
    MetricSpec(
        "carbon_intensity",
        "hf_eco2ai.carbon_intensity",
        OBSERVABLE_GAUGE,
        "g/kW.h",
        "Grid carbon intensity in force, gCO2e per kWh.",
        ("hf_eco2ai.grid.zone", "hf_eco2ai.grid.source"),
    ),
    MetricSpec(
        "steps",
        "hf_eco2ai.training.steps",
        OBSERVABLE_COUNTER,
        "{step}",
        "Optimizer steps completed.",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "samples",
        "hf_eco2ai.training.samples",
        OBSERVABLE_COUNTER,
        "{sample}",
        "Training samples processed by this process.",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "tokens",
        "hf_eco2ai.training.tokens",
        OBSERVABLE_COUNTER,
        "{token}",
        "Training input tokens processed by this process (input_ids elements, padding included).",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "energy_per_sample",
        "hf_eco2ai.training.energy_per_sample",
        OBSERVABLE_GAUGE,
        "J/{sample}",
        "Attributed energy of the current run divided by its training samples.",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "energy_per_token",
        "hf_eco2ai.training.energy_per_token",
        OBSERVABLE_GAUGE,
        "J/{token}",
        "Attributed energy of the current run divided by its training tokens.",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "projected_energy",
        "hf_eco2ai.projected.energy",
        OBSERVABLE_GAUGE,
        "J",
        "Projected energy of the whole current run (energy so far / progress), PUE applied.",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "projected_emissions",
        "hf_eco2ai.projected.emissions",
        OBSERVABLE_GAUGE,
        "g",
        "Projected emissions of the whole current run in grams CO2e.",
        ("hf_eco2ai.framework",),
    ),
    MetricSpec(
        "sensor_errors",
        "hf_eco2ai.sensor.errors",
        OBSERVABLE_COUNTER,
        "{error}",
        "Failed device reads; the sampler keeps going and retries (a lost device stops counting).",
        ("hw.id", "hw.type"),
    ),
    MetricSpec(
        "intensity_errors",
        "hf_eco2ai.carbon_intensity.errors",
        OBSERVABLE_COUNTER,
        "{error}",
        "Failed or rejected live carbon-intensity fetches (the table value is used instead).",
        ("hf_eco2ai.grid.source",),
    ),
)

METRICS_BY_KEY: dict[str, MetricSpec] = {m.key: m for m in METRICS}


def markdown_table() -> str:
    """The metric reference as a Markdown table (used to generate docs/metrics.md)."""
    lines = [
        "| metric | instrument | unit | Prometheus name | via OTLP / Collector | attributes | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        attrs = ", ".join(f"`{a}`" for a in m.attributes)
        otlp = "same" if m.prometheus_otlp == m.prometheus else f"`{m.prometheus_otlp}`"
        lines.append(
            f"| `{m.name}` | {m.instrument} | `{m.unit}` | `{m.prometheus}` | {otlp} | {attrs} | "
            f"{m.description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - docs generation entry
    sys.stdout.write(markdown_table())
