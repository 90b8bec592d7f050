"""`TelemetrySession`: one monitor, one tracer, one set of instruments, shared by integrations.

The instrumentor owns one session while instrumented. An explicit
:class:`~hf_eco2ai.integrations.transformers_callback.Eco2AICallback` used without the instrumentor owns
a session for the duration of its run, built on the global providers.

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> from hf_eco2ai.energy_monitor import EnergyMonitor
    >>> monitor = EnergyMonitor(CarbonConfig(), sensors=[],
    ...                         intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "config")))
    >>> session = TelemetrySession(CarbonConfig(), monitor=monitor)
    >>> session.counters("transformers").framework
    'transformers'
    >>> session.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.distributed.ranks import (
    RANK,
    RankInfo,
    rank_info,
    warn_if_host_measured_off_rank_zero,
)
from hf_eco2ai.energy_monitor import EnergyMonitor, acquire_monitor, release_monitor
from hf_eco2ai.telemetry.ids import use_private_ids
from hf_eco2ai.telemetry.metrics import EnergyMetrics, TrainingCounters
from hf_eco2ai.version import __version__

_LOG = logging.getLogger(__name__)

SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"


def resource_has_identity(provider: object) -> bool:
    """True when ``provider``'s Resource already carries ``hf_eco2ai.rank``.

    Works for the SDK's ``TracerProvider`` (``.resource``) and ``MeterProvider``; any other
    provider (the API's no-op and proxy providers) has no Resource we can read.

    >>> resource_has_identity(object())
    False
    """
    resource = getattr(provider, "resource", None)
    if resource is None:
        sdk_config = getattr(provider, "_sdk_config", None)
        resource = getattr(sdk_config, "resource", None)
    attributes = getattr(resource, "attributes", None)
    return isinstance(attributes, Mapping) and RANK in attributes


_active: TelemetrySession | None = None


def active_session() -> TelemetrySession | None:
    """The instrumentor's session while instrumented, else None."""
    return _active


def set_active_session(session: TelemetrySession | None) -> None:
    """Set by the instrumentor on instrument()/uninstrument()."""
    global _active
    _active = session


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
        use_private_ids(self.tracer)  # never draw span ids from the user's seeded `random`
        meter = metrics.get_meter("hf_eco2ai", __version__, meter_provider, schema_url=SCHEMA_URL)
        # Identity on every span and data point unless the provider's Resource carries it:
        # merged where spans and observations are created (no wrapped tracer or meter).
        self._spans_need_identity = not resource_has_identity(
            tracer_provider or trace.get_tracer_provider()
        )
        identity = not resource_has_identity(meter_provider or metrics.get_meter_provider())
        self._counters: dict[str, TrainingCounters] = {}
        self._lock = threading.Lock()
        self.closed = False
        self._route = _MeterRoute.bind(meter, self, identity)
        self.metrics = self._route.metrics

    def identity(self) -> Mapping[str, AttributeValue]:
        """The rank/host attributes of this process."""
        return self._identity

    def span_identity(self) -> Mapping[str, AttributeValue]:
        """The rank/host attributes to put on a span (none when the Resource has them)."""
        return self._identity if self._spans_need_identity else {}

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
        """Disable instruments, finish the work handed to the sampler thread (the spans of
        ``measure()`` windows that have closed), and release the monitor. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._route.unbind(self)
        try:  # ended here even when the shared monitor runs on for another holder
            self.monitor.sampler.run_pending(self.monitor.sampler.stall_after_s)
        except Exception:
            _LOG.debug("hf-eco2ai: finishing pending windows failed", exc_info=True)
        if self._owns_shared:
            release_monitor(self.monitor)
        else:
            self.monitor.close()


class _MeterRoute:
    """The one set of hf-eco2ai instruments of a meter, reporting for its newest live session.

    OpenTelemetry keeps the callbacks given when an instrument name is first created on a meter
    and ignores those of a later creation, so a second session on the same meter provider
    (``instrument()`` again, an explicit callback's next run) reuses the first session's
    instruments, pointed at itself; with no live session they yield nothing.
    """

    _routes: weakref.WeakKeyDictionary[Any, _MeterRoute] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.sessions: list[TelemetrySession] = []
        self.metrics: EnergyMetrics

    @classmethod
    def bind(cls, meter: Any, session: TelemetrySession, identity: bool) -> _MeterRoute:
        with cls._lock:
            try:
                route = cls._routes.get(meter)
            except TypeError:  # a meter that cannot be weakly referenced: no sharing
                route = None
            if route is None:
                route = cls()
                route.metrics = EnergyMetrics(
                    meter,
                    route.live_monitor,
                    route.all_counters,
                    route.identity if identity else dict,
                )
                with contextlib.suppress(TypeError):
                    cls._routes[meter] = route
            route.sessions.append(session)
            return route

    def unbind(self, session: TelemetrySession) -> None:
        with self._lock:
            if session in self.sessions:
                self.sessions.remove(session)

    def _current(self) -> TelemetrySession | None:
        try:
            return self.sessions[-1]
        except IndexError:
            return None

    def identity(self) -> Mapping[str, AttributeValue]:
        session = self._current()
        return session.identity() if session is not None else {}

    def live_monitor(self) -> EnergyMonitor | None:
        session = self._current()
        return session._live_monitor() if session is not None else None

    def all_counters(self) -> tuple[TrainingCounters, ...]:
        session = self._current()
        return session._all_counters() if session is not None else ()
