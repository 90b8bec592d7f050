"""OpenTelemetry instruments for energy, emissions and training efficiency.

All instruments are asynchronous: their callbacks read the monitor's latest snapshot and the
plain-integer training counters at collection time. The training hot path therefore does a few
integer additions per step and never calls into the OpenTelemetry SDK (a synchronous
``Counter.add`` costs microseconds per call). When telemetry is disabled (``uninstrument()``)
every callback yields nothing.

Example:
    >>> from opentelemetry.metrics import NoOpMeter
    >>> m = EnergyMetrics(NoOpMeter("x"), lambda: None)
    >>> list(m.observe("hw_energy"))
    []
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from hf_eco2ai.telemetry.names import (
    METRICS,
    OBSERVABLE_COUNTER,
    OBSERVABLE_GAUGE,
    OBSERVABLE_UP_DOWN_COUNTER,
)

if TYPE_CHECKING:
    from hf_eco2ai.energy_ledger import DeviceState
    from hf_eco2ai.energy_monitor import EnergyMonitor

_LOG = logging.getLogger(__name__)


class TrainingCounters:
    """Plain counters of one framework's training in this process (hot path: integer adds)."""

    __slots__ = (
        "framework",
        "projected_emissions_g",
        "projected_energy_j",
        "run_energy_j",
        "run_energy_start_j",
        "run_samples",
        "run_tokens",
        "samples",
        "steps",
        "tokens",
    )

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self.steps = 0
        self.samples = 0
        self.tokens = 0
        self.run_samples = 0
        self.run_tokens = 0
        self.run_energy_start_j: float | None = None
        self.run_energy_j: float | None = None
        """The ended run's energy (its window's, as in its span and report); None while open."""
        self.projected_energy_j: float | None = None
        self.projected_emissions_g: float | None = None

    def start_run(self, energy_j: float) -> None:
        """Reset the per-run efficiency baseline and projection."""
        self.run_samples = 0
        self.run_tokens = 0
        self.run_energy_start_j = energy_j
        self.run_energy_j = None
        self.projected_energy_j = None
        self.projected_emissions_g = None

    def finish_run(self, energy_j: float) -> None:
        """Fix the run's energy at its end: the efficiency gauges then report exactly what the
        run's span and report say, not the energy drawn since."""
        self.run_energy_j = energy_j

    def add(self, steps: int, samples: int, tokens: int) -> None:
        """Count processed work (O(1))."""
        self.steps += steps
        self.samples += samples
        self.tokens += tokens
        self.run_samples += samples
        self.run_tokens += tokens


class EnergyMetrics:
    """Creates every instrument of :data:`~hf_eco2ai.telemetry.names.METRICS` once."""

    def __init__(
        self,
        meter: Meter,
        get_monitor: Callable[[], EnergyMonitor | None],
        counters: Callable[[], Iterable[TrainingCounters]] = tuple,
        identity: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self._get_monitor = get_monitor
        self._counters = counters
        self._identity = identity
        self._failed: set[str] = set()
        self.instruments = {}
        for spec in METRICS:
            factory = {
                OBSERVABLE_COUNTER: meter.create_observable_counter,
                OBSERVABLE_GAUGE: meter.create_observable_gauge,
                OBSERVABLE_UP_DOWN_COUNTER: meter.create_observable_up_down_counter,
            }[spec.instrument]
            self.instruments[spec.key] = factory(
                spec.name,
                callbacks=[self._callback(spec.key)],
                unit=spec.unit,
                description=spec.description,
            )

    def _callback(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations = list(self.observe(key))
            if not observations:
                return observations
            identity = self._identity()
            if not identity:
                return observations
            out = []
            for obs in observations:  # identity first: an observation's own attributes win
                attrs: dict[str, Any] = dict(identity)
                attrs.update(obs.attributes or {})
                out.append(Observation(obs.value, attrs))
            return out

        callback.__name__ = f"observe_{key}"
        return callback

    def observe(self, key: str) -> Iterator[Observation]:
        """Observations for one metric; never raises (a failure is logged once per metric)."""
        try:
            yield from getattr(self, "_" + key)()
        except Exception:
            if key not in self._failed:
                self._failed.add(key)
                _LOG.warning("hf-eco2ai: collecting %s failed", key, exc_info=True)

    # ------------------------------------------------------------------ per metric
    def _snapshot_devices(self) -> tuple[DeviceState, ...]:
        monitor = self._get_monitor()
        return () if monitor is None else monitor.snapshot().devices

    def _hw_energy(self) -> Iterator[Observation]:
        for d in self._snapshot_devices():
            yield Observation(d.host_energy_j, d.info.attributes())  # host scope: what it drew

    def _hw_power(self) -> Iterator[Observation]:
        for d in self._snapshot_devices():
            yield Observation(d.host_power_w, d.info.attributes())

    @staticmethod
    def _gpu_attrs(d: DeviceState) -> dict[str, str]:
        return {"hw.id": d.info.hw_id, "hw.name": d.info.name, "hw.vendor": d.info.vendor}

    def _hw_gpu_utilization(self) -> Iterator[Observation]:
        for d in self._snapshot_devices():
            if d.info.hw_type.value == "gpu" and d.utilization is not None:
                yield Observation(d.utilization, self._gpu_attrs(d))

    def _hw_gpu_memory_usage(self) -> Iterator[Observation]:
        for d in self._snapshot_devices():
            if d.info.hw_type.value == "gpu" and d.memory_used is not None:
                yield Observation(d.memory_used, self._gpu_attrs(d))

    def _hw_gpu_memory_limit(self) -> Iterator[Observation]:
        for d in self._snapshot_devices():
            if d.info.hw_type.value == "gpu" and d.memory_limit is not None:
                yield Observation(d.memory_limit, self._gpu_attrs(d))

    def _energy(self) -> Iterator[Observation]:
        monitor = self._get_monitor()
        if monitor is not None:
            for hw_type, value in monitor.snapshot().energy_by_type.items():
                yield Observation(value, {"hw.type": hw_type})

    def _emissions(self) -> Iterator[Observation]:
        monitor = self._get_monitor()
        if monitor is not None:
            for hw_type, value in monitor.snapshot().emissions_by_type.items():
                yield Observation(value, {"hw.type": hw_type})

    def _carbon_intensity(self) -> Iterator[Observation]:
        monitor = self._get_monitor()
        if monitor is not None:
            snap = monitor.snapshot()
            if snap.seq:
                ci = snap.intensity
                yield Observation(
                    ci.value, {"hf_eco2ai.grid.zone": ci.zone, "hf_eco2ai.grid.source": ci.source}
                )

    def _steps(self) -> Iterator[Observation]:
        for c in self._counters():
            yield Observation(c.steps, {"hf_eco2ai.framework": c.framework})

    def _samples(self) -> Iterator[Observation]:
        for c in self._counters():
            yield Observation(c.samples, {"hf_eco2ai.framework": c.framework})

    def _tokens(self) -> Iterator[Observation]:
        for c in self._counters():
            if c.tokens:
                yield Observation(c.tokens, {"hf_eco2ai.framework": c.framework})

    def _per_unit(self, attr: str) -> Iterator[Observation]:
        monitor = self._get_monitor()
        if monitor is None:
            return
        energy = monitor.snapshot().energy_j
        for c in self._counters():
            count = getattr(c, attr)
            if count > 0 and c.run_energy_start_j is not None:
                used = c.run_energy_j
                if used is None:
                    used = max(0.0, energy - c.run_energy_start_j)
                yield Observation(
                    used / count,
                    {"hf_eco2ai.framework": c.framework},
                )

    def _energy_per_sample(self) -> Iterator[Observation]:
        return self._per_unit("run_samples")

    def _energy_per_token(self) -> Iterator[Observation]:
        return self._per_unit("run_tokens")

    def _projected_energy(self) -> Iterator[Observation]:
        for c in self._counters():
            if c.projected_energy_j is not None:
                yield Observation(c.projected_energy_j, {"hf_eco2ai.framework": c.framework})

    def _projected_emissions(self) -> Iterator[Observation]:
        for c in self._counters():
            if c.projected_emissions_g is not None:
                yield Observation(c.projected_emissions_g, {"hf_eco2ai.framework": c.framework})

    def _sensor_errors(self) -> Iterator[Observation]:
        for d in self._snapshot_devices():
            yield Observation(
                d.errors,
                {"hw.id": d.info.hw_id, "hw.type": d.info.hw_type.value},
            )

    def _intensity_errors(self) -> Iterator[Observation]:
        monitor = self._get_monitor()
        if monitor is None:
            return
        errors = monitor.sampler.intensity_errors + int(getattr(monitor.intensity, "errors", 0))
        yield Observation(errors, {"hf_eco2ai.grid.source": monitor.snapshot().intensity.source})
