"""Sensor faults injected mid-run, through the real sensors, the sampler and the ledger.

The unit tests (tests/unit/test_sampler.py, test_sensor_nvml.py, test_sensor_rapl.py) check each
piece alone with synthetic sensors. Here the real ``NvmlSensor`` (over the fake pynvml of
``tests/fakes/fake_nvml.py``) and the real ``RaplSensor`` (over a powercap tree in a temporary
directory) feed a real ``Sampler`` and ``Ledger``, and the faults arrive while sampling runs.
Each test says what it would catch if the containment were removed.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_ledger import DeviceStatus, Ledger
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.sampling_thread import Sampler
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading
from hf_eco2ai.sensors.discovery import discover_sensors
from hf_eco2ai.sensors.nvml import NvmlSensor
from hf_eco2ai.sensors.rapl import RaplSensor
from tests.fakes import fake_nvml as fn
from tests.fakes.fake_nvml import FakeGpu, FakeNVML, PowerTrace
from tests.fakes.synthetic import FakeClock

CI = StaticIntensity(CarbonIntensity(300.0, "XX", "config"))
INTERVAL = 0.5


def uuid(i: int) -> str:
    return f"GPU-{i:08d}-1111-2222-3333-444444444444"


class Rig:
    """Three fake GPUs read by the real NvmlSensor into a Sampler; both clocks move together."""

    def __init__(self, fake: FakeNVML | None = None) -> None:
        self.fake = fake or FakeNVML(
            [
                FakeGpu(uuid(0), power_w=250.0),
                FakeGpu(uuid(1), power_w=PowerTrace([(0, 100), (20, 300)])),
                FakeGpu(uuid(2), power_w=150.0),
            ]
        )
        self.clock = FakeClock()
        sensor = NvmlSensor.create(nvml=self.fake, environ={})
        assert sensor is not None
        self.sensor = sensor
        self.ledger = Ledger(sensor.devices, pue=1.0, history_size=1000)
        self.sampler = Sampler(
            [sensor], self.ledger, interval_s=INTERVAL, intensity=CI, clock=self.clock
        )
        self.sampler.tick()

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / INTERVAL)):
            self.fake.advance(INTERVAL)
            self.clock.advance(INTERVAL)
            self.sampler.tick()

    def energy(self, gpu: int) -> float:
        return self.ledger.snapshot().devices[gpu].energy_j

    def state(self, gpu: int) -> Any:
        return self.ledger.snapshot().devices[gpu]


# ---------------------------------------------------------------------------------- NVML
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (fn.NVML_ERROR_GPU_IS_LOST, DeviceStatus.LOST),
        (fn.NVML_ERROR_UNKNOWN, DeviceStatus.ERROR),
        (fn.NVML_ERROR_GPU_NOT_FOUND, DeviceStatus.ERROR),  # the device disappeared
    ],
    ids=["gpu-is-lost", "unknown", "device-gone"],
)
def test_nvml_error_on_one_gpu_mid_run_leaves_the_others_exact(
    code: int, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Would catch: one GPU's NVML error escaping ``tick`` (the sampler thread dies and every
    device stops being measured), or the failing GPU still accumulating energy."""
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")
    rig = Rig()
    rig.run(5.0)
    frozen_at = rig.energy(1)
    rig.fake.inject(1, code, start=rig.fake.now)
    rig.run(10.0)
    for gpu in (0, 2):
        assert rig.energy(gpu) == pytest.approx(rig.fake.true_energy_j(gpu), rel=1e-3)
        assert rig.state(gpu).status == DeviceStatus.OK
        assert rig.state(gpu).errors == 0
    failing = rig.state(1)
    assert failing.status == status
    assert failing.errors >= 1
    assert rig.energy(1) == frozen_at  # nothing invented while it could not be read
    assert math.isfinite(rig.ledger.snapshot().energy_j)
    # one warning for the device, not one per tick
    mine = [r for r in caplog.records if uuid(1) in r.getMessage()]
    assert len(mine) == 1, [r.getMessage() for r in mine]


def test_transient_nvml_error_recovers_and_the_counter_covers_the_gap() -> None:
    """Would catch: a device that stays marked failed after NVML recovers, or energy lost for
    the outage although the hardware counter kept counting through it."""
    rig = Rig()
    rig.run(3.0)
    rig.fake.inject(1, fn.NVML_ERROR_UNKNOWN, start=rig.fake.now, end=rig.fake.now + 4.0)
    rig.run(3.0)
    assert rig.state(1).status == DeviceStatus.ERROR
    rig.run(31.0)
    assert rig.state(1).status == DeviceStatus.OK
    assert rig.energy(1) == pytest.approx(rig.fake.true_energy_j(1), rel=1e-3)


def test_energy_counter_turning_not_supported_on_one_gpu_falls_back_to_power() -> None:
    """Would catch: NOT_SUPPORTED from the energy counter mid-run being treated as a failure
    (the GPU reads 0 J from then on: a silent zero) instead of switching to power."""
    rig = Rig()
    rig.run(5.0)
    rig.fake.inject(
        1,
        fn.NVML_ERROR_NOT_SUPPORTED,
        functions={"nvmlDeviceGetTotalEnergyConsumption"},
        start=rig.fake.now,
    )
    rig.run(40.0)  # the trace steps from 100 W to 300 W at 20 s: power integration follows
    assert rig.state(1).status == DeviceStatus.OK
    assert rig.energy(1) == pytest.approx(rig.fake.true_energy_j(1), rel=0.01)
    assert rig.energy(0) == pytest.approx(rig.fake.true_energy_j(0), rel=1e-3)


def test_nvml_init_failure_leaves_cpu_and_ram_measured(tmp_path: Path) -> None:
    """Would catch: a missing/broken NVIDIA driver stopping discovery (no sensor at all) or
    raising out of the monitor's construction, i.e. out of ``instrument()``."""

    class Exploding(FakeNVML):
        def nvmlInit(self) -> None:
            raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    config = CarbonConfig(sample_interval=0.05)
    for nvml in (FakeNVML(init_error=fn.NVML_ERROR_DRIVER_NOT_LOADED), Exploding()):
        found = discover_sensors(config, nvml=nvml, rapl_root=str(tmp_path / "no-rapl"))
        kinds = {d.hw_type for s in found.sensors for d in s.devices}
        assert kinds == {HwType.CPU, HwType.MEMORY}
        assert any(n.startswith("GPU:") and "NVML" in n for n in found.notes), found.notes
        monitor = EnergyMonitor(config, sensors=found.sensors, intensity=CI)
        monitor.start()
        time.sleep(0.15)
        monitor.close()
        assert monitor.snapshot().energy_j > 0


# ---------------------------------------------------------------------------------- counters
class GlitchyNVML(FakeNVML):
    """The energy counter of GPU 0 reads ``glitch_mj`` off for exactly one call."""

    glitch_mj = 0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: fn.FakeHandle) -> int:
        value = super().nvmlDeviceGetTotalEnergyConsumption(handle)
        if handle.index == 0 and self.glitch_mj:
            value, self.glitch_mj = value + self.glitch_mj, 0
        return value


def test_nvml_counter_restart_mid_run_is_bridged() -> None:
    """Would catch: a counter that restarts at 0 (driver reload, GPU reset) being subtracted
    (negative energy) or its restart value read as a huge increment."""
    rig = Rig()
    rig.run(5.0)
    rig.fake.reset_counter(0)
    rig.run(5.0)
    snap = rig.ledger.snapshot()
    assert snap.devices[0].energy_j == pytest.approx(rig.fake.true_energy_j(0), rel=0.02)


@pytest.mark.parametrize("glitch_mj", [-130_000, -3_000_000, 50_000_000_000])
def test_nvml_counter_glitch_is_not_counted(glitch_mj: int) -> None:
    """One read of the counter steps back by 130 J / 3 kJ (more than one interval's 125 J),
    or jumps by 50 MJ, then is right again. Would catch: a backward step read as a driver restart, which adds the whole
    counter history since the driver loaded (days of energy on a long-lived node) to the run,
    and a single garbage jump taken at face value."""
    fake = GlitchyNVML(
        [FakeGpu(uuid(0), power_w=250.0, counter_origin_mj=3_600_000_000)]  # 1 kWh so far
    )
    rig = Rig(fake)
    rig.run(5.0)
    fake.glitch_mj = glitch_mj
    rig.run(5.0)
    assert rig.energy(0) == pytest.approx(fake.true_energy_j(0), rel=0.02)


def test_frozen_energy_counter_falls_back_to_power_and_is_flagged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GPU 0's energy counter stops moving while it draws 250 W (its power reading says so) for
    10 s. Would catch: the run undercounting silently (the counter's 0 J taken as truth, status
    ``ok``, ``measured: true``), or the frozen stretch before detection left out."""
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")
    rig = Rig()
    rig.run(5.0)
    rig.fake.freeze_counter(0)
    rig.run(10.0)
    assert rig.energy(0) == pytest.approx(rig.fake.true_energy_j(0), rel=0.01)
    info = rig.state(0).info
    assert info.method is Method.NVML_POWER
    assert not info.measured
    assert info.extra["counter_fault"] == "true"
    assert "counter fault" in info.note
    assert not rig.ledger.snapshot().measured
    for gpu in (1, 2):  # the others keep their counters
        assert rig.state(gpu).info.method is Method.NVML_ENERGY
        assert rig.energy(gpu) == pytest.approx(rig.fake.true_energy_j(gpu), rel=1e-3)
    assert sum("counter fault" in r.getMessage() for r in caplog.records) == 1


def test_counter_moving_slower_than_its_update_period_is_not_a_fault() -> None:
    """A counter that only moves once a second, sampled every 0.5 s, stands still every other
    read. Would catch: that normal behaviour flagged as a fault (a false alarm that would swap
    every such GPU to power integration)."""
    fake = FakeNVML([FakeGpu(uuid(0), power_w=250.0, counter_period_s=1.0)])
    rig = Rig(fake)
    rig.run(30.0)
    assert rig.state(0).info.method is Method.NVML_ENERGY
    assert rig.energy(0) == pytest.approx(fake.true_energy_j(0), rel=0.02)


def _rapl_tree(root: Path, energy_uj: int, max_range: int | None) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    if max_range is not None:
        (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


class RaplRig:
    """A RAPL package zone whose counter the test writes; sampler and sensor share a clock."""

    MAX = 262_143_328_850

    def __init__(self, root: Path, *, start_uj: int, max_range: int | None = MAX) -> None:
        self.zone = _rapl_tree(root, start_uj, max_range)
        (root.parent / "cpuinfo").write_text("vendor_id\t: GenuineIntel\nmodel name\t: Xeon\n")
        self.clock = FakeClock()
        self.blocked = False
        self.uj = start_uj

        def opener(path: str) -> str:
            if self.blocked and path.endswith("energy_uj"):
                raise PermissionError(13, "Permission denied", path)
            with open(path, encoding="ascii") as fh:
                return fh.read()

        sensor = RaplSensor.create(
            str(root),
            cpuinfo_path=str(root.parent / "cpuinfo"),
            opener=opener,
            clock=lambda: self.clock() / 1e9,
        )
        assert sensor is not None
        self.ledger = Ledger(sensor.devices, pue=1.0, history_size=1000)
        self.sampler = Sampler(
            [sensor], self.ledger, interval_s=1.0, intensity=CI, clock=self.clock
        )
        self.sampler.tick()

    def step(self, seconds: float, watts: float, *, write: bool = True) -> None:
        """``seconds`` at ``watts``: the counter moves (wrapping at MAX), then one tick."""
        self.clock.advance(seconds)
        self.uj = (self.uj + round(watts * seconds * 1e6)) % self.MAX
        if write:
            (self.zone / "energy_uj").write_text(f"{self.uj}\n")
        self.sampler.tick()

    @property
    def state(self) -> Any:
        return self.ledger.snapshot().devices[0]


def test_rapl_counter_wrapping_mid_run_is_unwrapped(tmp_path: Path) -> None:
    """Would catch: the wrap read as a negative increment (dropped or subtracted)."""
    rig = RaplRig(tmp_path / "powercap", start_uj=RaplRig.MAX - 150_000_000)  # wraps in 1 s
    for _ in range(10):
        rig.step(1.0, 200.0)
    assert rig.state.energy_j == pytest.approx(2000.0, rel=1e-6)


def test_rapl_file_vanishing_then_unreadable_mid_run_is_contained(tmp_path: Path) -> None:
    """``energy_uj`` disappears (module unloaded), comes back, then turns root-only.
    Would catch: the OSError escaping the sampler, energy invented for the outage, or the
    device staying in error after the file is readable again."""
    rig = RaplRig(tmp_path / "powercap", start_uj=10_000_000)
    for _ in range(3):
        rig.step(1.0, 100.0)
    (rig.zone / "energy_uj").unlink()
    rig.step(1.0, 100.0, write=False)
    assert rig.state.status == DeviceStatus.ERROR
    rig.step(1.0, 100.0)  # the file is back, counter kept counting
    assert rig.state.status == DeviceStatus.OK
    rig.blocked = True
    rig.step(1.0, 100.0)
    rig.step(1.0, 100.0)
    assert rig.state.status == DeviceStatus.ERROR
    assert rig.state.errors == 3
    rig.blocked = False
    rig.step(1.0, 100.0)
    assert rig.state.status == DeviceStatus.OK
    # the counter covered the outages: 8 s at 100 W
    assert rig.state.energy_j == pytest.approx(800.0, rel=1e-6)


def test_rapl_backward_glitch_is_not_read_as_a_wrap(tmp_path: Path) -> None:
    """A counter read 1 µJ lower than before, with ``max_energy_range_uj`` known, looks like a
    wrap: 262 kJ in one second. Would catch: that 262 kJ landing in the run's total."""
    rig = RaplRig(tmp_path / "powercap", start_uj=10_000_000)
    for _ in range(3):
        rig.step(1.0, 100.0)
    rig.clock.advance(1.0)
    (rig.zone / "energy_uj").write_text(f"{rig.uj - 1}\n")
    rig.sampler.tick()
    for _ in range(3):
        rig.step(1.0, 100.0)
    assert rig.state.energy_j < 1000.0
    assert rig.state.energy_j == pytest.approx(700.0, rel=0.2)


class Scripted:
    """One device whose readings the test dictates."""

    def __init__(self, readings: list[Reading], method: Method = Method.NVML_ENERGY) -> None:
        self.readings = readings
        self._devices = (DeviceInfo("dev", HwType.GPU, "Scripted", "Test", method),)

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return self._devices

    def read(self, index: int) -> Reading:
        return self.readings.pop(0)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "bad",
    [
        Reading(power_w=float("nan"), energy_j=30.0),
        Reading(power_w=100.0, energy_j=float("inf")),
        Reading(power_w=100.0, energy_j=float("nan")),
        Reading(power_w=float("inf"), energy_j=None),
        Reading(power_w=1e12, energy_j=None),
    ],
    ids=["nan-power", "inf-energy", "nan-energy", "inf-power", "absurd-power"],
)
def test_non_finite_or_absurd_reading_never_reaches_the_totals(bad: Reading) -> None:
    """Would catch: one NaN/inf/absurd reading poisoning the ledger for the rest of the run
    (energy ``inf`` or ``nan`` forever, ``Infinity`` written into report.json)."""
    method = Method.NVML_ENERGY if bad.energy_j is not None else Method.NVML_POWER
    counter = bad.energy_j is not None
    readings = [Reading(100.0, 100.0 * k if counter else None) for k in range(9)]  # t = k s
    readings[3] = bad
    clock = FakeClock()
    sensor = Scripted(readings, method)
    ledger = Ledger(sensor.devices, pue=1.0, history_size=100)
    sampler = Sampler([sensor], ledger, interval_s=1.0, intensity=CI, clock=clock)
    sampler.tick()
    for _ in range(8):
        clock.advance(1.0)
        sampler.tick()
    snap = ledger.snapshot()
    assert math.isfinite(snap.energy_j) and math.isfinite(snap.emissions_g)
    assert math.isfinite(snap.power_w)
    assert snap.energy_j == pytest.approx(800.0, rel=1e-9)  # 8 s at 100 W, the gap bridged
    assert snap.devices[0].errors == 1


# ---------------------------------------------------------------------------------- clock
def test_wall_clock_jumps_do_not_distort_energy(
    fake_devices: None, telemetry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system clock jumps an hour forward, then two hours back, during a training run.
    Would catch: any integral (sampler intervals, span windows, report duration) taken on
    ``time.time()``: the run would read 255 W × 3600 s = 918 kJ too much (or negative)."""
    from train_hf import make_trainer

    from tests.reliability.conftest import (
        assert_energy_is_power_times_duration,
        fast_config,
        instrumented,
        one_report,
    )

    real_time, real_time_ns = time.time, time.time_ns
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(offset[0] * 1e9))

    class Jump:
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 2:
                offset[0] += 3600.0
            elif state.global_step == 5:
                offset[0] -= 7200.0
            time.sleep(0.02)

    from transformers import TrainerCallback

    callback = type("JumpCallback", (Jump, TrainerCallback), {})()
    started = time.monotonic()
    with instrumented(telemetry, fast_config()):
        trainer = make_trainer("out", train_size=64, eval_size=16, epochs=1, callbacks=[callback])
        trainer.train()
    elapsed = time.monotonic() - started
    report = one_report("runs")
    assert 0 < report["run"]["duration_s"] <= elapsed
    assert_energy_is_power_times_duration(report)
    run = telemetry.finished("transformers.trainer.train")[0]
    assert run.attributes["hf_eco2ai.duration.seconds"] == pytest.approx(
        report["run"]["duration_s"], rel=0.05
    )


# ---------------------------------------------------------------------------------- stuck reads
def RealTimeNVML(gpus: list[FakeGpu]) -> FakeNVML:
    """A fake NVML whose clock is real time (the sampler runs on its own thread here)."""
    return FakeNVML(gpus, real_time=True)


HANG_BOUND_S = 20.0
"""How long stop()/exit may take with a wedged driver call before the test calls it a hang.
Generous on purpose: the assertion is "did not hang", not a speed figure (the sampler's own
bound is max(2 s, 2 x interval) per stuck thread)."""


def _returns_in_time(call: Any) -> None:
    """Run ``call`` on a daemon thread; fail (instead of hanging the suite) if it blocks."""
    import threading

    done = threading.Event()

    def target() -> None:
        call()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(HANG_BOUND_S), f"{call} blocked on a stuck sensor read"


def _sampler_threads() -> list[Any]:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("hf-eco2ai-sampler")]


def test_stuck_gpu_read_never_hangs_stop_and_is_reported_stalled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GPU 1's energy call blocks forever mid-run (a wedged driver). Would catch: ``stop()``
    joining, then taking the final reading on the caller's thread, which waits forever on the
    lock the stuck sampler thread holds (``uninstrument()`` and exit never return); the other
    GPUs no longer measured; the stuck GPU reported ``ok``; energy recorded by the abandoned
    thread when the call finally returns."""
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")
    fake = RealTimeNVML([FakeGpu(uuid(0), power_w=200.0), FakeGpu(uuid(1), power_w=100.0)])
    sensor = NvmlSensor.create(nvml=fake, environ={})
    assert sensor is not None
    ledger = Ledger(sensor.devices, pue=1.0, history_size=1000)
    sampler = Sampler([sensor], ledger, interval_s=0.05, intensity=CI)
    _returns_in_time(sampler.start)
    time.sleep(0.2)
    release = fake.hang(1, {"nvmlDeviceGetTotalEnergyConsumption"})
    try:
        assert fake.hung.wait(HANG_BOUND_S)
        # the watchdog marks the GPU stalled and a fresh thread goes on reading GPU 0
        deadline = time.monotonic() + HANG_BOUND_S
        while ledger.snapshot().devices[1].status != DeviceStatus.STALLED:
            assert time.monotonic() < deadline, "the stuck read was never marked stalled"
            time.sleep(0.02)
        stalled_energy = ledger.snapshot().devices[1].energy_j
        seq = ledger.snapshot().seq
        deadline = time.monotonic() + HANG_BOUND_S
        while ledger.snapshot().seq < seq + 3:  # GPU 0 is still measured
            assert time.monotonic() < deadline, "sampling did not resume without the stuck GPU"
            time.sleep(0.02)
        _returns_in_time(sampler.stop)
        assert not sampler.running
    finally:
        release.set()
    for thread in _sampler_threads():  # the abandoned thread returns from the call now
        thread.join(HANG_BOUND_S)
    snap = ledger.snapshot()
    assert snap.devices[0].status == DeviceStatus.OK
    assert snap.devices[1].status == DeviceStatus.STALLED
    assert snap.devices[1].energy_j == stalled_energy  # nothing recorded by the stale thread
    assert snap.devices[1].power_w == 0.0  # nothing extrapolated for it either
    assert "stalled" in snap.devices[1].info.note
    assert snap.devices[0].energy_j > 0.0
    assert any("stalled" in r.getMessage() and uuid(1) in r.getMessage() for r in caplog.records)


def test_read_stuck_at_stop_is_abandoned_within_the_bound() -> None:
    """The final reading itself blocks (the driver wedges just as training ends). Would catch:
    ``stop()`` waiting for it forever, or reading the stuck device again on the caller's
    thread."""
    fake = RealTimeNVML([FakeGpu(uuid(0), power_w=200.0), FakeGpu(uuid(1), power_w=100.0)])
    sensor = NvmlSensor.create(nvml=fake, environ={})
    assert sensor is not None
    ledger = Ledger(sensor.devices, pue=1.0, history_size=1000)
    sampler = Sampler([sensor], ledger, interval_s=30.0, intensity=CI)  # watchdog: every 30 s
    _returns_in_time(sampler.start)
    release = fake.hang(0, {"nvmlDeviceGetTotalEnergyConsumption"})
    try:
        _returns_in_time(lambda: sampler.stop(timeout=0.5))
        assert fake.hung.is_set()
    finally:
        release.set()
    snap = ledger.snapshot()
    assert snap.devices[0].status == DeviceStatus.STALLED
    assert snap.devices[1].status == DeviceStatus.OK  # its final reading, on a fresh thread
    assert snap.seq == 2
    for thread in _sampler_threads():
        thread.join(HANG_BOUND_S)
    assert ledger.snapshot().seq == 2


SCRIPT = Path(__file__).parent / "scripts" / "stuck_sensor.py"


@pytest.mark.parametrize(
    ("mode", "wait_stalled"),
    [("exit", False), ("exit", True), ("close", False)],
    ids=["at-exit", "at-exit-after-watchdog", "close-then-exit"],
)
def test_process_with_a_wedged_gpu_call_exits(
    tmp_path: Path, mode: str, wait_stalled: bool
) -> None:
    """A subprocess whose fake GPU driver call never returns, then exits (run left open: the
    exit handlers end it; or ended and the monitor closed first). Would catch: the process
    hanging forever after the user's code finished (an unattended batch job that never ends),
    its exit status changed, or the report not saying what happened."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "runs"), "--mode", mode]
    if wait_stalled:
        cmd.append("--wait-stalled")
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = f"{repo / 'src'}:{repo}"
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_BOUND_S * 3
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process hung on a wedged sensor call:\n{exc.stderr!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["HUNG", "DONE"]
    reports = list((tmp_path / "runs").rglob("report.json"))
    assert len(reports) == 1, proc.stderr[-3000:]
    report = json.loads(reports[0].read_text())
    assert report["run"]["status"] == ("error" if mode == "exit" else "ok")
    gpu1 = report["devices"][1]
    if wait_stalled:
        assert gpu1["status"] == "stalled", gpu1
        assert "stalled" in gpu1["note"]
