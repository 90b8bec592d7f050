from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable

import pytest

from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.energy_ledger import Ledger
from hf_eco2ai.sampling_thread import Sampler
from hf_eco2ai.sensors.base import DeviceLostError, HwType, Method, Reading
from tests.fakes.synthetic import FakeClock, TraceSensor, integrate

CI = StaticIntensity(CarbonIntensity(200.0, "XX", "config"))


def make(sensors: list[TraceSensor], clock: FakeClock, *, pue: float = 1.0) -> Sampler:
    devices = [d for s in sensors for d in s.devices]
    return Sampler(
        sensors,
        Ledger(devices, pue=pue, history_size=100_000),
        interval_s=1.0,
        intensity=CI,
        clock=clock,
    )


def run(sampler: Sampler, clock: FakeClock, seconds: float, interval: float) -> None:
    sampler.tick()
    for _ in range(round(seconds / interval)):
        clock.advance(interval)
        sampler.tick()


def trace(t: float) -> float:
    """A synthetic GPU trace (t in seconds since the clock's start at t=1 s).

    Steps (idle 50 W -> 300 W), a ramp, a 0.2 s spike to 700 W (shorter than the interval) and
    a square wave.
    """
    t -= 1.0
    if t < 10:
        return 50.0
    if t < 30:
        return 300.0
    if t < 50:
        return 300.0 - 10.0 * (t - 30)  # ramp down to 100 W
    if 60.3 <= t < 60.5:
        return 700.0
    if t < 80:
        return 100.0
    return 150.0 if int(t) % 2 == 0 else 250.0


DURATION = 120.0


def test_counter_energy_is_within_one_percent_of_truth() -> None:
    clock = FakeClock()
    sensor = TraceSensor(clock, trace, counter=True)
    sampler = make([sensor], clock)
    run(sampler, clock, DURATION, 1.0)
    truth = integrate(trace, 1.0, 1.0 + DURATION)
    assert sampler.ledger.snapshot().energy_j == pytest.approx(truth, rel=0.01)


def test_power_integration_error_within_documented_bound() -> None:
    """Trapezoid error <= sum |dP| x dt / 2 over discontinuities + energy of sub-interval events."""
    clock = FakeClock()
    sensor = TraceSensor(clock, trace, counter=False)
    sampler = make([sensor], clock)
    dt = 1.0
    run(sampler, clock, DURATION, dt)
    truth = integrate(trace, 1.0, 1.0 + DURATION)
    got = sampler.ledger.snapshot().energy_j
    # discontinuities: 50->300, spike (+600, -600), 100->150, then 40 square-wave edges of 100 W
    jumps = 250 + 600 + 600 + 50 + 40 * 100
    spike_energy = 600 * 0.2
    bound = jumps * dt / 2 + spike_energy
    assert abs(got - truth) <= bound
    # and the band is far tighter than the TDP-model band on this realistic trace
    assert abs(got - truth) / truth < 0.10


def test_power_integration_converges_with_a_faster_interval() -> None:
    clock = FakeClock()
    sensor = TraceSensor(clock, trace, counter=False)
    sampler = make([sensor], clock)
    run(sampler, clock, DURATION, 0.1)
    truth = integrate(trace, 1.0, 1.0 + DURATION)
    assert sampler.ledger.snapshot().energy_j == pytest.approx(truth, rel=0.01)


def test_pue_and_emissions_integrate_energy_times_intensity() -> None:
    clock = FakeClock()
    sampler = make([TraceSensor(clock, lambda t: 360.0)], clock, pue=1.25)
    run(sampler, clock, 10.0, 1.0)
    snap = sampler.ledger.snapshot()
    assert snap.energy_j == pytest.approx(3600 * 1.25, rel=1e-6)
    assert snap.emissions_g == pytest.approx(3600 * 1.25 / 3.6e6 * 200.0, rel=1e-6)


def test_counter_reset_bridged_by_power() -> None:
    clock = FakeClock()
    sensor = TraceSensor(clock, lambda t: 100.0)
    sampler = make([sensor], clock)
    run(sampler, clock, 5.0, 1.0)
    sensor._energy = 0.0  # the driver reset the counter
    clock.advance(1.0)
    sampler.tick()
    run(sampler, clock, 4.0, 1.0)
    assert sampler.ledger.snapshot().energy_j == pytest.approx(1000.0, rel=1e-3)


def test_transient_error_is_contained_counted_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    bad = TraceSensor(clock, lambda t: 100.0, hw_id="bad", fail_at=frozenset({3, 4, 5}))
    good = TraceSensor(clock, lambda t: 10.0, hw_type=HwType.CPU, hw_id="good")
    sampler = make([bad, good], clock)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.sampling_thread"):
        run(sampler, clock, 10.0, 1.0)
    snap = sampler.ledger.snapshot()
    assert sampler.read_errors == 3
    assert snap.devices[0].errors == 3
    assert snap.devices[0].status == "ok"  # recovered
    # the counter catches up over the gap: no energy lost
    assert snap.devices[0].energy_j == pytest.approx(1000.0, rel=1e-3)
    assert snap.devices[1].energy_j == pytest.approx(100.0, rel=1e-3)
    assert len([r for r in caplog.records if "reading bad failed" in r.getMessage()]) == 1


def test_error_status_visible_while_failing() -> None:
    clock = FakeClock()
    bad = TraceSensor(clock, lambda t: 100.0, fail_at=frozenset({2}))
    sampler = make([bad], clock)
    sampler.tick()
    clock.advance(1)
    sampler.tick()
    assert sampler.ledger.snapshot().devices[0].status == "error"


def test_lost_device_stops_being_read_others_continue() -> None:
    clock = FakeClock()
    lost = TraceSensor(
        clock, lambda t: 100.0, hw_id="gpu", fail_at=frozenset({4}), exc=DeviceLostError("gone")
    )
    cpu = TraceSensor(clock, lambda t: 20.0, hw_type=HwType.CPU, hw_id="cpu")
    sampler = make([lost, cpu], clock)
    run(sampler, clock, 10.0, 1.0)
    snap = sampler.ledger.snapshot()
    assert snap.devices[0].status == "lost"
    assert lost.reads == 4
    assert snap.devices[0].energy_j == pytest.approx(200.0, rel=1e-3)  # reads 1-3: 2 intervals
    assert snap.devices[1].energy_j == pytest.approx(200.0, rel=1e-3)
    assert snap.devices[0].power_w == 0.0


def test_intensity_provider_failure_keeps_last_value(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        calls = 0

        def current(self) -> CarbonIntensity:
            self.calls += 1
            if self.calls > 2:
                raise RuntimeError("provider broke")
            return CarbonIntensity(300.0, "ZZ", "test")

        def maybe_refresh(self, now_monotonic_s: float) -> None:
            pass

        def close(self) -> None:
            pass

    clock = FakeClock()
    sensor = TraceSensor(clock, lambda t: 100.0)
    sampler = Sampler(
        [sensor],
        Ledger(sensor.devices, pue=1.0, history_size=10),
        interval_s=1.0,
        intensity=Flaky(),
        clock=clock,
    )
    run(sampler, clock, 4.0, 1.0)
    assert sampler.intensity_errors == 3
    assert sampler.ledger.snapshot().intensity.value == 300.0


def test_ledger_must_match_sensors() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="exactly the sensors"):
        Sampler(
            [TraceSensor(clock, lambda t: 1.0)],
            Ledger([], pue=1.0, history_size=10),
            interval_s=1.0,
            intensity=CI,
        )


def test_thread_start_stop_idempotent_and_final_tick() -> None:
    sensor_clock = FakeClock()
    sensor = TraceSensor(sensor_clock, lambda t: 1.0)
    sampler = Sampler(
        [sensor],
        Ledger(sensor.devices, pue=1.0, history_size=100),
        interval_s=0.05,
        intensity=CI,
    )
    sampler.start()
    sampler.start()
    assert sampler.running
    threads = [t for t in __import__("threading").enumerate() if t.name == "hf-eco2ai-sampler"]
    assert len(threads) == 1 and threads[0].daemon
    time.sleep(0.3)
    ticks = sampler.ticks
    assert ticks >= 3
    sampler.stop()
    sampler.stop()
    assert not sampler.running
    assert sampler.ticks >= ticks + 1  # final tick taken at stop
    after = sampler.ticks
    time.sleep(0.15)
    assert sampler.ticks == after
    sampler.start()  # restart works
    assert sampler.running
    sampler.stop()


def test_every_reading_is_taken_on_the_sampler_thread() -> None:
    """Would catch: the first or final reading's sensor calls (files, NVML) made on the caller's
    thread at start/stop, where a wedged driver call blocks the training thread forever and each
    call that releases the GIL waits for whatever thread holds it then (the power.png thread at
    the end of a run); or the first/final reading skipped."""
    import threading

    readers: list[str] = []

    class Recording(TraceSensor):
        def read(self, index: int):  # type: ignore[no-untyped-def]
            readers.append(threading.current_thread().name)
            return super().read(index)

    sensor = Recording(FakeClock(), lambda t: 10.0)
    sampler = Sampler(
        [sensor], Ledger(sensor.devices, pue=1.0, history_size=100), interval_s=30.0, intensity=CI
    )
    sampler.start()  # returns once the thread took the first reading (the run's start needs it)
    assert readers == ["hf-eco2ai-sampler"]
    assert sampler.ledger.snapshot().seq == 1
    sampler.stop()
    assert readers == ["hf-eco2ai-sampler"] * 2
    assert sampler.ticks == 2
    assert not sampler.running


def test_stop_wakes_the_sleeping_thread_at_once() -> None:
    """Would catch: stop() waiting for the sleep between ticks to run out (here 30 s, so the
    stall bound of 60 s would pass first and the thread would be abandoned as stuck)."""
    sensor = TraceSensor(FakeClock(), lambda t: 10.0)
    sampler = Sampler(
        [sensor], Ledger(sensor.devices, pue=1.0, history_size=100), interval_s=30.0, intensity=CI
    )
    sampler.start()
    started = time.monotonic()
    sampler.stop()
    assert time.monotonic() - started < 10.0  # a bound far below the interval, not a speed
    assert not sampler.running
    assert (sampler.ticks, sampler.stalls) == (2, 0)  # the first and the final reading
    sampler.start()  # a restart sleeps and wakes the same way
    sampler.stop()
    assert (sampler.ticks, sampler.stalls) == (4, 0)


def test_stop_without_start_is_a_noop() -> None:
    clock = FakeClock()
    sampler = make([TraceSensor(clock, lambda t: 1.0)], clock)
    sampler.stop()
    assert sampler.ticks == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_runs_no_sampler_and_does_not_deadlock() -> None:
    clock = FakeClock()
    sensor = TraceSensor(clock, lambda t: 1.0)
    sampler = Sampler(
        [sensor], Ledger(sensor.devices, pue=1.0, history_size=10), interval_s=0.05, intensity=CI
    )
    sampler.start()
    sampler.ledger._lock.acquire()  # held by the parent at fork time
    try:
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                sampler.start()
                if sampler.running:
                    code = 3
                ticks = sampler.ticks
                sampler.tick()
                if sampler.ticks != ticks:
                    code = 4
                sampler.ledger.record(1, [1.0], [1.0], CI.current())  # fresh lock: no deadlock
                sampler.stop()
            except BaseException:
                code = 5
            os._exit(code)
    finally:
        sampler.ledger._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sampler.running  # the parent is unaffected
    sampler.stop()


def test_drift_free_schedule_skips_after_a_slow_tick() -> None:
    calls: list[float] = []

    class Slow(TraceSensor):
        def read(self, index: int):  # type: ignore[no-untyped-def]
            calls.append(time.monotonic())
            if len(calls) == 3:
                time.sleep(0.35)
            return super().read(index)

    clock = FakeClock()
    sensor = Slow(clock, lambda t: 1.0)
    sampler = Sampler(
        [sensor], Ledger(sensor.devices, pue=1.0, history_size=100), interval_s=0.1, intensity=CI
    )
    sampler.start()
    time.sleep(0.8)
    sampler.stop()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert not any(g < 0.02 for g in gaps[2:-1]), gaps  # no burst of catch-up ticks
    assert math.isfinite(sum(gaps))


class MeanPowerSensor(TraceSensor):
    """Like the TDP model: each read returns the mean power since the previous read."""

    def __init__(self, clock: FakeClock, power: Callable[[float], float]) -> None:
        super().__init__(clock, power, counter=False, hw_type=HwType.CPU, hw_id="cpu")
        self._since = clock() / 1e9

    def read(self, index: int) -> Reading:
        now = self.clock() / 1e9
        if now <= self._since:
            return Reading(power_w=self.power(now))
        mean = integrate(self.power, self._since, now, 2000) / (now - self._since)
        self._since = now
        return Reading(power_w=mean)


def test_interval_mean_power_is_attributed_to_its_own_interval() -> None:
    """The TDP model's reading is the mean over the interval just ended. Would catch: the
    trapezoid rule, which spreads each mean over this interval and the next, so after a load
    step energy lands half an interval late (a window ending at the step+1 s reads low)."""
    clock = FakeClock()

    def step(t: float) -> float:
        return 20.0 if t < 6.5 else 100.0  # t in s of the fake clock (starts at 1 s)

    sensor = MeanPowerSensor(clock, step)
    assert sensor.devices[0].method is Method.TDP_MODEL
    sampler = make([sensor], clock)
    sampler.tick()
    energies = {}
    for k in range(1, 11):
        clock.advance(1.0)
        sampler.tick()
        energies[k] = sampler.ledger.snapshot().energy_j
    for k in (5, 6, 7, 10):  # windows from the start to each tick, across the step
        assert energies[k] == pytest.approx(integrate(step, 1.0, 1.0 + k), abs=0.05), k


def test_counter_running_backwards_twice_is_flagged() -> None:
    """Would catch: a counter that keeps stepping back bridged silently every time and still
    labelled a hardware measurement."""
    clock = FakeClock()
    sensor = TraceSensor(clock, lambda t: 100.0)
    sampler = make([sensor], clock)
    run(sampler, clock, 3.0, 1.0)
    for _ in range(2):
        sensor._energy -= 250.0  # a step back (the interval added 100 J)
        clock.advance(1.0)
        sampler.tick()
    run(sampler, clock, 3.0, 1.0)
    info = sampler.ledger.snapshot().devices[0].info
    assert info.method is Method.NVML_POWER
    assert info.extra["counter_fault"] == "true"
    assert sampler.ledger.snapshot().energy_j == pytest.approx(800.0, rel=1e-3)


def test_one_counter_restart_is_bridged_not_flagged() -> None:
    """A single restart (driver reload) is bridged by power. Would catch: it flagged as a
    counter fault (the GPU losing its hardware counter for the rest of the run)."""
    clock = FakeClock()
    sensor = TraceSensor(clock, lambda t: 100.0)
    sampler = make([sensor], clock)
    run(sampler, clock, 3.0, 1.0)
    sensor._energy = 0.0
    run(sampler, clock, 3.0, 1.0)
    assert sampler.ledger.snapshot().devices[0].info.method is Method.NVML_ENERGY


class Blocking(TraceSensor):
    """A device whose read blocks on ``block`` (when set) until the test releases it."""

    def __init__(self, clock: FakeClock, power: Callable[[float], float]) -> None:
        super().__init__(clock, power, hw_id="stuck")
        self.block: threading.Event | None = None
        self.entered = threading.Event()

    def read(self, index: int) -> Reading:
        if self.block is not None:
            self.entered.set()
            self.block.wait()
        return super().read(index)


def test_a_read_stuck_mid_tick_costs_the_other_devices_no_energy() -> None:
    """Device 0 is read, then device 1's read blocks; the watchdog abandons the tick. Would
    catch: device 0's state advanced by the abandoned tick (its interval never recorded: energy
    lost), or anything recorded when the stuck read finally returns."""
    clock = FakeClock()
    good = TraceSensor(clock, lambda t: 100.0, hw_id="good")
    stuck = Blocking(clock, lambda t: 50.0)
    sampler = make([good, stuck], clock)
    run(sampler, clock, 1.0, 1.0)
    clock.advance(1.0)
    stuck.block = threading.Event()
    worker = threading.Thread(target=sampler.tick, daemon=True)
    worker.start()
    assert stuck.entered.wait(10)
    assert sampler.check_stalled() == []  # not overdue yet (fake clock: 0 s in flight)
    clock.advance(5.0)
    assert sampler.check_stalled() == ["stuck"]
    sampler.tick()  # a fresh tick, without the stalled device
    snap = sampler.ledger.snapshot()
    assert snap.devices[0].energy_j == pytest.approx(100.0 * 7)  # t = 1 s .. 8 s, nothing lost
    assert snap.devices[1].status == "stalled"
    seq = snap.seq
    stuck.block.set()
    worker.join(10)
    assert not worker.is_alive()
    assert sampler.ledger.snapshot().seq == seq  # the abandoned tick recorded nothing
    assert sampler.ledger.snapshot().devices[0].energy_j == pytest.approx(700.0)


# ---------------------------------------------------------------------- deferred jobs
def idle(clock: FakeClock) -> Sampler:
    """A sampler whose thread never ticks on its own during a test (1 h on a fake clock)."""
    sensor = TraceSensor(clock, lambda t: 100.0)
    ledger = Ledger(sensor.devices, pue=1.0, history_size=100)
    return Sampler([sensor], ledger, interval_s=3600.0, intensity=CI, clock=clock)


def test_jobs_run_in_order_on_the_sampler_thread_without_an_early_tick() -> None:
    clock = FakeClock()
    sampler = idle(clock)
    assert sampler.call_soon(lambda: None) is False  # no thread: the caller does it itself
    sampler.start()
    try:
        assert sampler.ticks == 1
        ran: list[tuple[int, str, int]] = []
        done = threading.Event()
        for i in range(5):
            job = lambda i=i: ran.append((i, threading.current_thread().name, sampler.ticks))  # noqa: E731
            assert sampler.call_soon(job)
        assert sampler.call_soon(done.set)
        assert done.wait(10)
        assert ran == [(i, "hf-eco2ai-sampler", 1) for i in range(5)]
        assert sampler.ticks == 1  # woken six times, never read the sensors for it
        assert sampler.pending_jobs == 0
    finally:
        sampler.stop()
    assert sampler.call_soon(lambda: None) is False


def test_a_tick_that_falls_due_runs_before_the_jobs_still_queued() -> None:
    clock = FakeClock()
    sampler = idle(clock)
    sampler.start()
    try:
        gate, done = threading.Event(), threading.Event()
        seen: list[int] = []
        assert sampler.call_soon(lambda: gate.wait(10))  # the thread waits here meanwhile
        assert sampler.call_soon(lambda: clock.advance(3600.5))  # the next reading falls due
        assert sampler.call_soon(lambda: seen.append(sampler.ticks))
        assert sampler.call_soon(done.set)
        gate.set()
        assert done.wait(10)
        assert seen == [2]  # the due reading was taken before the next job
    finally:
        sampler.stop()


def test_stop_and_run_pending_finish_what_the_thread_could_not() -> None:
    clock = FakeClock()
    sampler = idle(clock)
    sampler.start()
    threads: list[str] = []
    with sampler._jobs_lock:  # as if another thread were running jobs: the sampler can't
        assert sampler.call_soon(lambda: threads.append(threading.current_thread().name))
        assert sampler.call_soon(lambda: threads.append(threading.current_thread().name))
        assert sampler.pending_jobs == 2
        assert sampler.run_pending() is True  # the lock is re-entrant: this thread runs them
        assert threads == [threading.current_thread().name] * 2
        assert sampler.call_soon(lambda: threads.append("at stop"))
        sampler.stop()  # the thread leaves without waiting for the lock; stop() runs the job
    assert threads[-1] == "at stop" and sampler.pending_jobs == 0
    assert not sampler.running


def test_run_pending_gives_up_after_its_timeout_when_a_job_is_stuck() -> None:
    clock = FakeClock()
    sampler = idle(clock)
    sampler.start()
    release, entered = threading.Event(), threading.Event()
    try:
        assert sampler.call_soon(lambda: (entered.set(), release.wait(10)))
        assert entered.wait(10)
        assert sampler.run_pending(timeout=0.05) is False
    finally:
        release.set()
        sampler.stop()
    assert sampler.run_pending(timeout=0.05) is True


def test_a_failing_job_is_logged_once_and_the_sampler_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    sampler = idle(clock)
    sampler.start()
    done = threading.Event()

    def boom() -> None:
        raise ValueError("bad job")

    try:
        with caplog.at_level(logging.WARNING):
            assert sampler.call_soon(boom) and sampler.call_soon(boom)
            assert sampler.call_soon(done.set)
            assert done.wait(10)
        assert sampler.running
    finally:
        sampler.stop()
    failed = [r for r in caplog.records if "deferred work" in r.getMessage()]
    assert len(failed) == 1 and "ValueError: bad job" in failed[0].getMessage()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_childs_sampler_takes_no_job_and_drops_the_parents() -> None:
    clock = FakeClock()
    sampler = idle(clock)
    sampler.start()
    ran: list[str] = []
    try:
        with sampler._jobs_lock:  # the parent's job stays queued across the fork
            assert sampler.call_soon(lambda: ran.append("parent"))
            pid = os.fork()
            if pid == 0:  # child: the parent's spans are not its to end
                code = 0
                try:
                    if sampler.pending_jobs != 0:
                        code = 3
                    elif sampler.call_soon(lambda: None) is not False:
                        code = 4
                    elif sampler.run_pending(timeout=1.0) is not True:  # a fresh lock
                        code = 5
                except BaseException:
                    code = 6
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sampler.run_pending(timeout=10) and ran == ["parent"]
    finally:
        sampler.stop()
