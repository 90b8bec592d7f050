"""`TelemetrySession`: one monitor, one tracer, one set of instruments, shared by integrations.

The instrumentor owns one session while instrumented. An explicit
:class:`~hf_eco2ai.integrations.transformers.Eco2AICallback` used without the instrumentor owns
a session for the duration of its run, built on the global providers.

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> from hf_eco2ai.monitor import EnergyMonitor
    >>> monitor = EnergyMonitor(CarbonConfig(), sensors=[],
    ...                         intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "config")))
    >>> session = TelemetrySession(CarbonConfig(), monitor=monitor)
    >>> session.counters("transformers").framework
    'transformers'
    >>> session.close()
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.monitor import EnergyMonitor, acquire_monitor, release_monitor
from hf_eco2ai.telemetry.metrics import EnergyMetrics, TrainingCounters
from hf_eco2ai.version import __version__

_LOG = logging.getLogger(__name__)

SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"


class TelemetrySession:
    """Monitor + tracer + meter instruments for one process.

    ``monitor`` defaults to the process-wide shared monitor (started here, released by
    :meth:`close`).
    """

    def __init__(
        self,
        config: CarbonConfig,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        monitor: EnergyMonitor | None = None,
        local_rank: int = 0,
    ) -> None:
        self.config = config
        self._owns_shared = monitor is None
        self.monitor = (
            monitor if monitor is not None else acquire_monitor(config, local_rank=local_rank)
        )
        if monitor is not None:
            monitor.start()
        self.tracer: Tracer = trace.get_tracer(
            "hf_eco2ai", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter("hf_eco2ai", __version__, meter_provider, schema_url=SCHEMA_URL)
        self._counters: dict[str, TrainingCounters] = {}
        self._lock = threading.Lock()
        self.metrics = EnergyMetrics(meter, self._live_monitor, self._all_counters)
        self.closed = False

    def _live_monitor(self) -> EnergyMonitor | None:
        return None if self.closed else self.monitor

    def _all_counters(self) -> tuple[TrainingCounters, ...]:
        return tuple(self._counters.values())

    def counters(self, framework: str) -> TrainingCounters:
        """The training counters of ``framework`` (created on first use)."""
        with self._lock:
            counters = self._counters.get(framework)
            if counters is None:
                counters = self._counters[framework] = TrainingCounters(framework)
            return counters

    def close(self) -> None:
        """Disable instruments and release the monitor. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.metrics.disable()
        if self._owns_shared:
            release_monitor(self.monitor)
        else:
            self.monitor.close()
