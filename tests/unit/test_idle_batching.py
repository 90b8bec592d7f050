"""The sampler's idle batching: readings taken on time, their arithmetic left for later while
nobody reads the ledger, and every reader sees every reading taken (docs/benchmarks.md, "Idle
cost of the sampler")."""

from __future__ import annotations

import threading
import time

import pytest

from hf_eco2ai import energy_ledger
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.energy_ledger import Ledger
from hf_eco2ai.sampling_thread import IDLE_AFTER, IDLE_BATCH, Sampler
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError
from tests.fakes.synthetic import FakeClock

CI = StaticIntensity(CarbonIntensity(200.0, "XX", "config"))


class SplitSensor:
    """A power-only device read in two steps, as the CPU and RAM models are: ``read_raw`` (the
    system calls) at the tick, ``decode`` (the arithmetic) at commit. Its power is the tick
    number in watts, so every reading is told apart."""

    def __init__(self, clock: FakeClock, *, fail_decode_at: int | None = None) -> None:
        self.clock = clock
        self.devices = (DeviceInfo("cpu", HwType.CPU, "Split", "Test", Method.TDP_MODEL),)
        self.raw_at: list[int] = []
        self.decoded: list[tuple[int, str]] = []
        self.fail_decode_at = fail_decode_at

    def read(self, index: int) -> Reading:
        return self.decode(index, self.read_raw(index))

    def read_raw(self, index: int) -> int:
        self.raw_at.append(self.clock())
        return len(self.raw_at)

    def decode(self, index: int, raw: int) -> Reading:
        self.decoded.append((raw, threading.current_thread().name))
        if raw == self.fail_decode_at:
            raise SensorError("garbled")
        return Reading(float(raw))

    def close(self) -> None:
        pass


def make(sensor: SplitSensor, clock: FakeClock) -> Sampler:
    return Sampler(
        [sensor],
        Ledger(sensor.devices, pue=1.0, history_size=1000),
        interval_s=1.0,
        intensity=CI,
        clock=clock,
    )


def ticks(sampler: Sampler, clock: FakeClock, n: int, *, idle_batching: bool = True) -> None:
    for _ in range(n):
        clock.advance(1.0)
        sampler.tick(idle_batching=idle_batching)


def test_unread_readings_wait_and_the_next_reader_gets_every_one_exactly() -> None:
    clock = FakeClock()
    sensor = SplitSensor(clock)
    sampler = make(sensor, clock)
    twin_clock = FakeClock()
    twin = make(SplitSensor(twin_clock), twin_clock)  # the same readings, no batching
    sampler.tick()
    twin.tick()
    ticks(sampler, clock, 10)
    ticks(twin, twin_clock, 10, idle_batching=False)
    # committed at once until IDLE_AFTER ticks are unread (nobody has read any); then they wait
    assert sampler.ledger.seq == IDLE_AFTER
    assert len(sensor.raw_at) == 11  # every reading taken on time, at its tick
    assert sensor.raw_at == [(i + 1) * 1_000_000_000 for i in range(11)]
    assert len(sensor.decoded) == IDLE_AFTER
    snap = sampler.ledger.snapshot()  # a reader: everything taken is committed first
    assert snap.seq == 11 == sampler.ticks
    assert [raw for raw, _ in sensor.decoded] == list(range(1, 12))  # once each, in order
    expected = twin.ledger.snapshot()
    assert snap.energy_j == expected.energy_j > 0
    assert snap.t_ns == expected.t_ns == clock()  # the time of the last reading, not of the read
    assert snap.power_w == expected.power_w == 11.0


def test_a_read_ledger_is_not_idle_and_a_full_batch_is_committed_by_the_sampler() -> None:
    clock = FakeClock()
    sensor = SplitSensor(clock)
    sampler = make(sensor, clock)
    sampler.tick()
    sampler.ledger.snapshot()
    ticks(sampler, clock, IDLE_AFTER)
    assert sampler.ledger.seq == 1 + IDLE_AFTER  # read just before: committed at once
    ticks(sampler, clock, IDLE_BATCH - 1)
    assert sampler.ledger.seq == 1 + IDLE_AFTER  # a batch waiting, one short of full
    ticks(sampler, clock, 1)
    assert sampler.ledger.seq == sampler.ticks == 1 + IDLE_AFTER + IDLE_BATCH
    assert len(sensor.decoded) == sampler.ticks


def test_history_and_flush_commit_the_waiting_readings_too() -> None:
    clock = FakeClock()
    sampler = make(SplitSensor(clock), clock)
    sampler.tick()
    ticks(sampler, clock, 6)
    assert sampler.ledger.seq < 7
    assert len(sampler.ledger.history().t_ns) == 7
    ticks(sampler, clock, 5)
    assert sampler.flush() is True
    assert sampler.ledger.seq == 12


def test_a_decode_failure_is_counted_at_commit_and_the_others_stand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    sensor = SplitSensor(clock, fail_decode_at=6)
    sampler = make(sensor, clock)
    sampler.tick()
    ticks(sampler, clock, 9)
    snap = sampler.ledger.snapshot()
    assert snap.seq == 10
    assert sampler.read_errors == 1 and snap.devices[0].errors == 1
    assert snap.devices[0].status == "ok"  # the last reading decoded
    assert "garbled" in caplog.text


def test_a_reader_never_waits_unboundedly_for_a_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would catch: a reader blocking on the commit lock for as long as it is held (a reader
    waits at most READ_FLUSH_TIMEOUT_S, then takes the totals as they stand)."""
    monkeypatch.setattr(energy_ledger, "READ_FLUSH_TIMEOUT_S", 0.05)
    clock = FakeClock()
    sampler = make(SplitSensor(clock), clock)
    sampler.tick()
    ticks(sampler, clock, 6)
    seq = sampler.ledger.seq
    with sampler._flush_lock:  # a commit in progress on another thread, stuck
        started = time.monotonic()
        snap = sampler.ledger.snapshot()
        assert time.monotonic() - started < 5.0  # a bound far above the timeout, not a speed
    assert snap.seq == seq  # as they stood
    assert sampler.ledger.snapshot().seq == 7  # and all of them once the lock is free


def test_the_thread_batches_while_idle_and_stop_commits_what_is_left() -> None:
    sensor = SplitSensor(FakeClock())
    sampler = Sampler(
        [sensor], Ledger(sensor.devices, pue=1.0, history_size=1000), interval_s=0.01, intensity=CI
    )
    sampler.start()
    deadline = time.monotonic() + 30.0
    while len(sampler._pending) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sampler._pending, "no reading was left for later while nobody read the ledger"
    sampler.stop()
    assert not sampler._pending
    assert sampler.ledger.seq == sampler.ticks == len(sensor.raw_at)
    names = {name for _, name in sensor.decoded}
    assert names <= {"hf-eco2ai-sampler", threading.current_thread().name}


def test_the_cpu_and_ram_models_read_in_two_steps_and_a_wrapper_does_not() -> None:
    """Would catch: the two-step protocol looked up through a wrapper's ``__getattr__`` (the
    job-scope wrapper of RAPL/NVML would hand over its inner sensor's ``read_raw`` and the
    job share would be lost)."""
    from hf_eco2ai.sensors.base import TwoStepSensor
    from hf_eco2ai.sensors.cpu_model import CpuTdpSensor
    from hf_eco2ai.sensors.process_share import FakeTree, JobScopedSensor
    from hf_eco2ai.sensors.ram_model import RamModelSensor

    cpu = CpuTdpSensor.create(40.0, cpu_model="X 1")
    ram = RamModelSensor(0.375)
    wrapped = JobScopedSensor(CpuTdpSensor.create(40.0, cpu_model="X 2"), FakeTree([0.0] * 10))
    assert isinstance(cpu, TwoStepSensor) and isinstance(ram, TwoStepSensor)
    clock = FakeClock()
    sampler = Sampler(
        [cpu, ram, wrapped],
        Ledger([*cpu.devices, *ram.devices, *wrapped.devices], pue=1.0, history_size=10),
        interval_s=1.0,
        intensity=CI,
        clock=clock,
    )
    assert sampler._split == [True, True, False]
    sampler.tick()
    sampler.ledger.snapshot()
    for sensor in (cpu, ram, wrapped):
        sensor.close()
