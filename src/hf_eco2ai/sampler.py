"""The sampler: one daemon thread that reads every sensor at a fixed interval.

Per tick it reads each device, turns the reading into an energy increment (hardware counter
difference where there is one, trapezoid integration of power otherwise), and records the
increments in the :class:`~hf_eco2ai.ledger.Ledger` with the carbon intensity in force.
Every read error is contained: the device is marked, counted, logged once, and retried.
Time is ``time.monotonic_ns()``, so wall-clock jumps do not distort integrals.

Forked children (e.g. DataLoader workers) never run the parent's sampler: ``os.register_at_fork``
marks every sampler as inherited in the child and gives its ledger a fresh lock.

Example:
    >>> from hf_eco2ai.ledger import Ledger
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> s = Sampler([], Ledger([], pue=1.0, history_size=10), interval_s=1.0,
    ...             intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "config")))
    >>> s.tick(); s.ledger.snapshot().seq
    1
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from hf_eco2ai.carbon.intensity import IntensityProvider
from hf_eco2ai.ledger import DeviceStatus, Ledger
from hf_eco2ai.sensors.base import DeviceLostError, Reading, Sensor, SensorError
from hf_eco2ai.sensors.process_share import JobScope

_LOG = logging.getLogger(__name__)

MAX_DEVICE_POWER_W = 10_000.0
"""No single device read here draws more: a larger power, or a counter step implying more
(over at least 1 s, the coarsest counter update period), is a glitch, never energy."""


class ImplausibleReadingError(SensorError):
    """A reading with a non-finite or absurd value: counted and skipped like a failed read."""


def _check(reading: Reading) -> Reading:
    power, energy = float(reading.power_w), reading.energy_j
    if not (math.isfinite(power) and power <= MAX_DEVICE_POWER_W) or (
        energy is not None and not math.isfinite(energy)
    ):
        raise ImplausibleReadingError(f"power {power!r} W, energy {energy!r} J")
    return reading


_LIVE: weakref.WeakSet[Sampler] = weakref.WeakSet()


class _DeviceTrack:
    """Per-device integration state (sampler thread only)."""

    __slots__ = (
        "errors",
        "index",
        "last_energy",
        "last_power",
        "last_t",
        "logged",
        "lost",
        "sensor",
    )

    def __init__(self, sensor: Sensor, index: int) -> None:
        self.sensor = sensor
        self.index = index
        self.last_t: int | None = None
        self.last_energy: float | None = None
        self.last_power = 0.0
        self.errors = 0
        self.lost = False
        self.logged: set[str] = set()


class Sampler:
    """Reads ``sensors`` every ``interval_s`` seconds on a daemon thread into ``ledger``."""

    def __init__(
        self,
        sensors: Sequence[Sensor],
        ledger: Ledger,
        *,
        interval_s: float,
        intensity: IntensityProvider,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.sensors = tuple(sensors)
        self.ledger = ledger
        self.interval_s = float(interval_s)
        self.intensity = intensity
        self._clock = clock
        self._tracks = [_DeviceTrack(s, i) for s in self.sensors for i in range(len(s.devices))]
        if len(self._tracks) != len(ledger.devices):
            raise ValueError("the ledger must hold exactly the sensors' devices, in order")
        self._n = len(self._tracks)
        self._utilization: list[float | None] = [None] * self._n
        self._mem_used: list[int | None] = [None] * self._n
        self._mem_limit: list[int | None] = [None] * self._n
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tick_lock = threading.Lock()
        self._inherited = False
        self.ticks = 0
        self.read_errors = 0
        """Total failed device reads (also per device in the snapshot)."""
        self.intensity_errors = 0
        _LIVE.add(self)

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """True while the sampler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Take a first reading and start the thread. Idempotent; a no-op in a forked child."""
        if self._inherited or self.running:
            return
        self._stop.clear()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="hf-eco2ai-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and take a final reading, so totals reach the stop time. Idempotent.

        The sampler thread takes the final reading itself on its way out, so the caller only
        waits for it once (the reading's file and driver calls stay off the caller's thread);
        if the thread does not end within ``timeout``, the caller takes it.
        """
        if self._inherited:
            return
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        if thread.is_alive():
            self.tick()

    def _run(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        next_t = self._clock() + interval_ns
        while True:
            delay = (next_t - self._clock()) / 1e9
            if self._stop.wait(max(0.0, delay)):
                self.tick()  # the final reading, up to the stop time
                return
            self.tick()
            now = self._clock()
            next_t += interval_ns
            if next_t < now:  # a tick took longer than the interval: skip, don't burst
                next_t = now + interval_ns

    # ------------------------------------------------------------------ one tick
    def tick(self) -> None:
        """Read every device once and record the increments (thread-safe; also used by tests)."""
        if self._inherited:
            return
        with self._tick_lock:
            self._tick()

    def _tick(self) -> None:
        now = self._clock()
        try:
            self.intensity.maybe_refresh(now / 1e9)
            intensity = self.intensity.current()
        except Exception as exc:  # a provider must never stop sampling
            self.intensity_errors += 1
            if self.intensity_errors == 1:
                _LOG.warning("hf-eco2ai: carbon-intensity provider failed: %r", exc)
            intensity = self.ledger.snapshot().intensity
        deltas = [0.0] * self._n
        powers = [0.0] * self._n
        status = [DeviceStatus.OK] * self._n
        errors = [0] * self._n
        scopes: list[JobScope | None] = [None] * self._n  # job share per device (scope helper)
        for k, tr in enumerate(self._tracks):
            if tr.lost:
                status[k], errors[k] = DeviceStatus.LOST, tr.errors
                continue
            t = self._clock()
            try:
                reading = _check(tr.sensor.read(tr.index))
            except Exception as exc:
                tr.errors += 1
                self.read_errors += 1
                name = tr.sensor.devices[tr.index].hw_id
                if isinstance(exc, DeviceLostError):
                    tr.lost = True
                    status[k] = DeviceStatus.LOST
                    _LOG.warning("hf-eco2ai: device %s lost, no longer measured: %s", name, exc)
                else:
                    status[k] = DeviceStatus.ERROR
                    kind = type(exc).__name__
                    if kind not in tr.logged:
                        tr.logged.add(kind)
                        _LOG.warning(
                            "hf-eco2ai: reading %s failed (%s: %s); retrying", name, kind, exc
                        )
                errors[k] = tr.errors
                powers[k] = 0.0
                continue
            errors[k] = tr.errors
            power = max(0.0, float(reading.power_w))
            powers[k] = power
            scopes[k] = reading.scope
            self._utilization[k] = reading.utilization
            self._mem_used[k] = reading.memory_used
            self._mem_limit[k] = reading.memory_limit
            if tr.last_t is not None:
                dt = (t - tr.last_t) / 1e9
                if reading.energy_j is not None and tr.last_energy is not None:
                    delta = reading.energy_j - tr.last_energy
                    # counter reset (driver reload, device reset) or glitch: bridge by power
                    if delta < 0.0 or delta > MAX_DEVICE_POWER_W * max(dt, 1.0):
                        delta = 0.5 * (power + tr.last_power) * dt
                else:
                    delta = 0.5 * (power + tr.last_power) * dt
                deltas[k] = max(0.0, delta)
            tr.last_t = t
            tr.last_energy = reading.energy_j
            tr.last_power = power
        self.ledger.record(
            now,
            deltas,
            powers,
            intensity,
            utilization=self._utilization,
            memory_used=self._mem_used,
            memory_limit=self._mem_limit,
            status=status,
            errors=errors,
            scope=scopes,
        )
        self.ticks += 1

    # ------------------------------------------------------------------ fork safety
    def _after_fork_in_child(self) -> None:
        self._inherited = True
        self._thread = None
        self._tick_lock = threading.Lock()
        self.ledger.reset_lock()


def _after_fork_in_child() -> None:
    for sampler in list(_LIVE):
        sampler._after_fork_in_child()


def _stop_all_at_exit() -> None:
    for sampler in list(_LIVE):
        try:
            sampler.stop(timeout=1.0)
        except Exception:  # pragma: no cover - interpreter shutdown
            _LOG.debug("hf-eco2ai: sampler stop at exit failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_all_at_exit)
