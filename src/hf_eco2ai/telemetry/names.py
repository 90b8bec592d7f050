"""The single registry of metric names, instruments, units and descriptions.

Instruments are created from :data:`METRICS` only, and the docs' metric reference is generated
from it too (``python -m hf_eco2ai.telemetry.names``), so names cannot drift.

Example:
    >>> spec = METRICS_BY_KEY["hw_energy"]
    >>> spec.name, spec.unit, spec.prometheus
    ('hw.energy', 'J', 'hw_energy_joules_total')
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

OBSERVABLE_COUNTER = "ObservableCounter"
OBSERVABLE_GAUGE = "ObservableGauge"
OBSERVABLE_UP_DOWN_COUNTER = "ObservableUpDownCounter"

_PROM_UNITS = {
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "By": "bytes",
    "1": "ratio",
    "g/kW.h": "grams_per_kilowatt_hour",
    "J/{sample}": "joules_per_sample",
    "J/{token}": "joules_per_token",
    "{step}": "",
    "{sample}": "",
    "{token}": "",
    "{error}": "",
}

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
        """The name the Prometheus exporter / Collector renders for this metric."""
        base = self.name.replace(".", "_")
        suffix = _PROM_UNITS.get(self.unit, "")
        if suffix and not base.endswith(suffix):
            base = f"{base}_{suffix}"
        if self.instrument == OBSERVABLE_COUNTER:
            base += "_total"
        return base


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "hw_energy",
        "hw.energy",
        OBSERVABLE_COUNTER,
        "J",
        "Energy consumed by the device since measurement started (no PUE).",
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
        "Energy attributed to this process's training, PUE applied, by device type.",
        ("hw.type",),
    ),
    MetricSpec(
        "emissions",
        "hf_eco2ai.emissions",
        OBSERVABLE_COUNTER,
        "g",
        "Emissions in grams CO2e (energy x PUE x grid intensity, integrated), by device type.",
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
        "| metric | instrument | unit | Prometheus name | attributes | description |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        attrs = ", ".join(f"`{a}`" for a in m.attributes)
        lines.append(
            f"| `{m.name}` | {m.instrument} | `{m.unit}` | `{m.prometheus}` | {attrs} | "
            f"{m.description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - docs generation entry
    sys.stdout.write(markdown_table())
