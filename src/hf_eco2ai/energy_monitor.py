"""`EnergyMonitor`: sensors + ledger + sampler for one process, built from a `CarbonConfig`.

The instrumentor and :class:`~hf_eco2ai.integrations.transformers_callback.Eco2AICallback` share one
monitor per process through :func:`acquire_monitor` / :func:`release_monitor`, so a device is
never measured twice by the same process.

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> m = EnergyMonitor(CarbonConfig(), sensors=[],
    ...                   intensity=StaticIntensity(CarbonIntensity(50.0, "FR", "config")))
    >>> m.start(); m.snapshot().seq >= 1
    True
    >>> m.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from hf_eco2ai.carbon.intensity import IntensityProvider
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_ledger import History, Ledger, Snapshot
from hf_eco2ai.sampling_thread import Sampler
from hf_eco2ai.sensors.base import DeviceInfo, Sensor

_LOG = logging.getLogger(__name__)


class EnergyMonitor:
    """Everything that measures: discovery, sampler thread, ledger.

    ``sensors`` and ``intensity`` are discovered from ``config`` unless given (tests, benchmarks).
    Nothing touches hardware until construction; nothing runs until :meth:`start`.
    """

    def __init__(
        self,
        config: CarbonConfig,
        *,
        sensors: Sequence[Sensor] | None = None,
        intensity: IntensityProvider | None = None,
        local_rank: int = 0,
        notes: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.notes: list[str] = list(notes)
        self.location_method = "given"
        self.location_detail = "provided by the caller"
        if sensors is None:
            from hf_eco2ai.sensors.discovery import discover_sensors

            found = discover_sensors(config, local_rank=local_rank)
            sensors = found.sensors
            self.notes.extend(found.notes)
        if intensity is None:
            from hf_eco2ai.carbon.location import resolve_intensity

            resolution = resolve_intensity(config)
            intensity = resolution.provider
            self.location_method = resolution.method
            self.location_detail = resolution.detail
        self.sensors: tuple[Sensor, ...] = tuple(sensors)
        self.intensity = intensity
        devices = [d for s in self.sensors for d in s.devices]
        self.ledger = Ledger(devices, pue=config.pue, history_size=config.history_size)
        self.sampler = Sampler(
            self.sensors,
            self.ledger,
            interval_s=config.sample_interval,
            intensity=intensity,
        )
        self._closed = False

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        """Every measured device, in ledger order."""
        return self.ledger.devices

    @property
    def running(self) -> bool:
        """True while the sampler thread runs."""
        return self.sampler.running

    def start(self) -> None:
        """Start sampling (idempotent)."""
        self.sampler.start()

    def stop(self) -> None:
        """Stop sampling with a final reading (idempotent); sensors stay open for a restart."""
        self.sampler.stop()

    def close(self) -> None:
        """Stop and release sensors and providers (idempotent)."""
        self.stop()
        if self._closed:
            return
        self._closed = True
        for sensor in self.sensors:
            try:
                sensor.close()
            except Exception:
                _LOG.debug("hf-eco2ai: closing %r failed", sensor, exc_info=True)
        try:
            self.intensity.close()
        except Exception:
            _LOG.debug("hf-eco2ai: closing intensity provider failed", exc_info=True)

    def snapshot(self) -> Snapshot:
        """The latest snapshot (O(1), no I/O)."""
        return self.ledger.snapshot()

    def history(self) -> History:
        """A copy of the sample history (for reports)."""
        return self.ledger.history()


MonitorFactory = Callable[[CarbonConfig, int], EnergyMonitor]

_SHARED_LOCK = threading.Lock()
_SHARED: EnergyMonitor | None = None
_REFS = 0
_FACTORY: MonitorFactory | None = None


def set_monitor_factory(factory: MonitorFactory | None) -> None:
    """Replace how the shared monitor is built (tests, benchmarks with fake devices).

    ``factory(config, local_rank)`` returns an :class:`EnergyMonitor`; ``None`` restores discovery.
    """
    global _FACTORY
    _FACTORY = factory


def acquire_monitor(config: CarbonConfig, *, local_rank: int = 0) -> EnergyMonitor:
    """The process-wide monitor, created and started on first use, reference counted.

    A later caller with a different config gets the existing monitor (one measurement per
    process); the difference is logged.
    """
    global _SHARED, _REFS
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED._closed:
            if _FACTORY is not None:
                _SHARED = _FACTORY(config, local_rank)
            else:
                _SHARED = EnergyMonitor(config, local_rank=local_rank)
            _REFS = 0
        elif _SHARED.config != config:
            _LOG.info("hf-eco2ai: a monitor already runs in this process; reusing its config")
        _REFS += 1
        _SHARED.start()
        return _SHARED


def release_monitor(monitor: EnergyMonitor) -> None:
    """Drop one reference; the last one stops and closes the shared monitor."""
    global _SHARED, _REFS
    with _SHARED_LOCK:
        if monitor is not _SHARED:
            monitor.close()
            return
        _REFS -= 1
        if _REFS <= 0:
            _SHARED.close()
            _SHARED = None
            _REFS = 0


def close_shared_monitor() -> bool:
    """Close the process-wide monitor whatever its references (tests, and a process that wants
    measurement gone); True if there was one."""
    global _SHARED, _REFS
    with _SHARED_LOCK:
        shared, _SHARED, _REFS = _SHARED, None, 0
    if shared is None:
        return False
    shared.close()
    return True


def shared_monitor() -> EnergyMonitor | None:
    """The process-wide monitor if one is active (for tests and the doctor)."""
    return _SHARED
