"""A synthetic sensor driven by a controllable clock, with an exactly known energy integral."""

from __future__ import annotations

from collections.abc import Callable

from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError


class FakeClock:
    """A monotonic nanosecond clock that only moves when told to."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)


def integrate(power: Callable[[float], float], t0: float, t1: float, steps: int = 200_000) -> float:
    """Reference integral of ``power`` over [t0, t1] (midpoint rule, fine grid)."""
    if t1 <= t0:
        return 0.0
    h = (t1 - t0) / steps
    return sum(power(t0 + (k + 0.5) * h) for k in range(steps)) * h


class TraceSensor:
    """One device whose power is ``power(t_seconds)`` of the fake clock.

    With ``counter=True`` it reports a cumulative energy counter (exact integral, optionally
    wrapping at ``wrap_j`` and unwrapped here as a real sensor does), otherwise power only.
    ``fail_at`` is a set of tick numbers on which :meth:`read` raises.
    """

    def __init__(
        self,
        clock: FakeClock,
        power: Callable[[float], float],
        *,
        counter: bool = True,
        hw_type: HwType = HwType.GPU,
        hw_id: str = "dev0",
        fail_at: frozenset[int] = frozenset(),
        exc: Exception | None = None,
    ) -> None:
        self.clock = clock
        self.power = power
        self.counter = counter
        method = Method.NVML_ENERGY if counter else Method.NVML_POWER
        if hw_type is HwType.CPU:
            method = Method.RAPL if counter else Method.TDP_MODEL
        self._devices = (DeviceInfo(hw_id, hw_type, "Synthetic", "Test", method),)
        self._t0 = clock() / 1e9
        self._energy = 0.0
        self._last_t = self._t0
        self.reads = 0
        self.fail_at = fail_at
        self.exc = exc or SensorError("injected")
        self.closed = False

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return self._devices

    def _advance_energy(self) -> None:
        now = self.clock() / 1e9
        if now > self._last_t:
            self._energy += integrate(self.power, self._last_t, now, steps=2000)
            self._last_t = now

    def read(self, index: int) -> Reading:
        self._advance_energy()
        self.reads += 1
        if self.reads in self.fail_at:
            raise self.exc
        p = self.power(self.clock() / 1e9)
        return Reading(power_w=p, energy_j=self._energy if self.counter else None)

    def close(self) -> None:
        self.closed = True
