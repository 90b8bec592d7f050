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

import dataclasses
import logging
import threading
from collections.abc import Mapping

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.distributed import (
    IdentityMeter,
    IdentityTracer,
    RankInfo,
    rank_info,
    resource_has_identity,
    warn_if_host_measured_off_rank_zero,
)
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
        local_rank: int | None = None,
        rank: RankInfo | None = None,
    ) -> None:
        self.config = config
        # Rank facts (torch.distributed, then env unless given): host CPU/RAM on local rank 0 only.
        self.rank = rank if rank is not None else rank_info()
        if local_rank is not None and local_rank != self.rank.local_rank:
            self.rank = dataclasses.replace(self.rank, local_rank=local_rank)
        self._identity = self.rank.attributes()
        self._owns_shared = monitor is None
        self.monitor = (
            monitor
            if monitor is not None
            else acquire_monitor(config, local_rank=self.rank.local_rank)
        )
        if monitor is not None:
            monitor.start()
        self.tracer: Tracer = trace.get_tracer(
            "hf_eco2ai", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter("hf_eco2ai", __version__, meter_provider, schema_url=SCHEMA_URL)
        # Identity on every span and data point unless the provider's Resource carries it.
        if not resource_has_identity(tracer_provider or trace.get_tracer_provider()):
            self.tracer = IdentityTracer(self.tracer, self.identity)
        if not resource_has_identity(meter_provider or metrics.get_meter_provider()):
            meter = IdentityMeter(meter, self.identity)
        self._counters: dict[str, TrainingCounters] = {}
        self._lock = threading.Lock()
        self.metrics = EnergyMetrics(meter, self._live_monitor, self._all_counters)
        self.closed = False

    def identity(self) -> Mapping[str, AttributeValue]:
        """The rank/host attributes added to this session's spans and data points."""
        return self._identity

    def set_rank(self, rank: RankInfo) -> None:
        """Refresh the rank facts once the framework knows them (at run start)."""
        self.rank = rank
        self._identity = rank.attributes()
        warn_if_host_measured_off_rank_zero(self.monitor, rank)

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
