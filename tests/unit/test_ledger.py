from __future__ import annotations

import threading

import pytest

from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.energy_ledger import DeviceStatus, Ledger, combined_coverage, empty_snapshot
from hf_eco2ai.sensors.bands import RAM_MODEL_BAND, TDP_TABLE_BAND
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method
from hf_eco2ai.sensors.process_share import JobScope

GPU = DeviceInfo("GPU-1", HwType.GPU, "Fake GPU", "NVIDIA", Method.NVML_ENERGY)
CPU = DeviceInfo("cpu", HwType.CPU, "Fake CPU", "Acme", Method.TDP_MODEL)
RAM = DeviceInfo("memory", HwType.MEMORY, "RAM", "", Method.RAM_MODEL)
CI_100 = CarbonIntensity(100.0, "XX", "config")
CI = CI_100
S = 1_000_000_000


def test_empty_snapshot_before_first_record() -> None:
    ledger = Ledger([GPU, CPU], pue=1.0, history_size=10)
    snap = ledger.snapshot()
    assert snap.seq == 0
    assert snap.energy_j == 0.0
    assert snap.energy_by_type == {"gpu": 0.0, "cpu": 0.0}
    assert ledger.history().t_ns.size == 0


def test_record_accumulates_with_pue_and_integrated_intensity() -> None:
    ledger = Ledger([GPU, CPU, RAM], pue=1.5, history_size=10)
    ledger.record(1, [3.6e6, 0.0, 0.0], [100.0, 10.0, 1.0], CI_100)
    # intensity changes mid-run: the second interval is weighted by the new value
    ledger.record(2, [0.0, 3.6e6, 1.8e6], [100.0, 10.0, 1.0], CarbonIntensity(400.0, "XX", "x"))
    snap = ledger.snapshot()
    assert snap.seq == 2
    assert snap.energy_j == pytest.approx(1.5 * (3.6e6 + 3.6e6 + 1.8e6))
    # 1 kWh x 1.5 x 100 + 1 kWh x 1.5 x 400 + 0.5 kWh x 1.5 x 400
    assert snap.emissions_g == pytest.approx(150 + 600 + 300)
    assert snap.energy_by_type == pytest.approx({"gpu": 5.4e6, "cpu": 5.4e6, "memory": 2.7e6})
    assert snap.emissions_by_type == pytest.approx({"gpu": 150, "cpu": 600, "memory": 300})
    assert snap.power_w == pytest.approx(1.5 * 111.0)
    assert snap.power_by_type["gpu"] == pytest.approx(150.0)
    assert snap.intensity.value == 400.0
    assert snap.devices[0].energy_j == 3.6e6  # raw device energy, no PUE


def test_uncertainty_band_uses_each_method() -> None:
    ledger = Ledger([GPU, CPU], pue=1.0, history_size=10)
    ledger.record(1, [100.0, 100.0], [0.0, 0.0], CI_100)
    snap = ledger.snapshot()
    # nvml-energy +-5 %, tdp-model (TDP from the table) x1.00..x1.71, both as derived
    lo, hi = TDP_TABLE_BAND.low, TDP_TABLE_BAND.high
    assert snap.energy_low_j == pytest.approx(95 + 100 * lo)
    assert snap.energy_high_j == pytest.approx(105 + 100 * hi)
    assert snap.emissions_low_g < snap.emissions_g < snap.emissions_high_g
    assert snap.devices[1].energy_low_j == pytest.approx(100 * lo)
    assert snap.devices[1].energy_high_j == pytest.approx(100 * hi)
    assert snap.band_coverage == pytest.approx(TDP_TABLE_BAND.coverage)  # the GPU states none
    assert snap.methods == ("nvml-energy", "tdp-model")
    assert snap.measured is False


def test_measured_only_with_hardware_counters() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=10)
    assert ledger.snapshot().measured is True
    assert empty_snapshot([], 1.0).measured is False


def test_negative_deltas_are_ignored() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=10)
    ledger.record(1, [10.0], [1.0], CI_100)
    ledger.record(2, [-5.0], [1.0], CI_100)
    assert ledger.snapshot().energy_j == 10.0


def test_status_errors_and_optional_fields_in_snapshot() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=10)
    ledger.record(
        1,
        [1.0],
        [50.0],
        CI_100,
        utilization=[0.5],
        memory_used=[1024],
        memory_limit=[4096],
        status=[DeviceStatus.ERROR],
        errors=[3],
    )
    dev = ledger.snapshot().devices[0]
    assert (dev.utilization, dev.memory_used, dev.memory_limit) == (0.5, 1024, 4096)
    assert (dev.status, dev.errors) == ("error", 3)
    ledger.record(2, [0.0], [0.0], CI_100, status=[DeviceStatus.LOST], errors=[4])
    assert ledger.snapshot().devices[0].status == "lost"
    assert ledger.snapshot().devices[0].errors == 4


def test_history_ring_buffer_is_bounded_and_ordered() -> None:
    ledger = Ledger([GPU, CPU], pue=2.0, history_size=10)
    for k in range(25):
        ledger.record(k, [1.0, 1.0], [float(k), 2.0 * k], CI_100)
    hist = ledger.history()
    assert hist.t_ns.tolist() == list(range(15, 25))
    assert hist.power_w.shape == (10, 2)
    assert hist.power_w[:, 0].tolist() == [float(k) for k in range(15, 25)]
    assert hist.energy_j[-1] == pytest.approx(2.0 * 2 * 25)
    assert (hist.intensity == 100.0).all()
    # the copy is detached from the ring
    hist.t_ns[0] = -1
    assert ledger.history().t_ns[0] == 15


def test_snapshot_is_consistent_under_concurrent_writes() -> None:
    ledger = Ledger([GPU, CPU], pue=1.0, history_size=64)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            ledger.record(1, [1.0, 1.0], [1.0, 1.0], CI_100)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2000):
            snap = ledger.snapshot()
            assert snap.energy_j == pytest.approx(sum(d.energy_j for d in snap.devices))
            assert snap.energy_j == pytest.approx(2.0 * snap.seq)
    finally:
        stop.set()
        thread.join()


def test_reset_lock_gives_a_usable_lock() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=10)
    ledger._lock.acquire()  # as if another thread held it when a fork happened
    ledger.reset_lock()
    ledger.record(1, [1.0], [1.0], CI_100)
    assert ledger.snapshot().seq == 1


# ---------------------------------------------------------------------- host and job scopes
def test_job_scope_is_each_intervals_share_of_host_energy() -> None:
    ledger = Ledger([GPU, CPU, RAM], pue=2.0, history_size=10)
    cpu_half = JobScope(0.5, True, job_cpu_s=1.0, busy_cpu_s=2.0)
    ledger.record(
        1, [3.6e6, 3.6e6, 1.0e3], [100.0, 40.0, 1.0], CI_100, scope=[None, cpu_half, None]
    )
    cpu_all = JobScope(1.0, False, job_cpu_s=1.0, busy_cpu_s=1.0)
    gpu_shared = JobScope(1.0, True)  # others on the GPU, no per-process figures
    ledger.record(
        2, [0.0, 3.6e6, 0.0], [100.0, 20.0, 1.0], CI_100, scope=[gpu_shared, cpu_all, None]
    )
    snap = ledger.snapshot()
    gpu, cpu, ram = snap.devices
    # host: what the devices drew
    assert cpu.host_energy_j == pytest.approx(7.2e6)
    assert snap.host_energy_j == pytest.approx(2.0 * (3.6e6 + 7.2e6 + 1e3))
    assert snap.host_energy_by_type["cpu"] == pytest.approx(2.0 * 7.2e6)
    assert cpu.host_emissions_g == pytest.approx(400.0)  # 2 kWh x PUE 2 x 100 g/kWh
    # job: half of the first CPU interval, all of the second; GPU and RAM are all ours
    assert cpu.energy_j == pytest.approx(1.8e6 + 3.6e6)
    assert cpu.emissions_g == pytest.approx(300.0)  # 1.5 kWh x PUE 2 x 100 g/kWh
    assert snap.energy_j == pytest.approx(2.0 * (3.6e6 + 5.4e6 + 1e3))
    assert snap.energy_by_type["cpu"] == pytest.approx(2.0 * 5.4e6)
    assert snap.emissions_g < snap.host_emissions_g
    assert ram.energy_j == ram.host_energy_j == 1e3  # the RAM model is already per process tree
    # power: host as read, job by the latest share
    assert (cpu.host_power_w, cpu.power_w) == (20.0, 20.0)
    assert snap.host_power_w == pytest.approx(2.0 * 121.0)
    # sharing facts
    assert (cpu.job_cpu_s, cpu.busy_cpu_s, cpu.shared_intervals) == (2.0, 3.0, 1)
    assert (gpu.shared, gpu.shared_intervals, cpu.shared) == (True, 1, False)
    assert ram.shared is None
    hist = ledger.history()
    assert hist.energy_j[-1] == pytest.approx(snap.energy_j)
    assert hist.host_energy_j[-1] == pytest.approx(snap.host_energy_j)
    assert hist.power_w[0, 1] == pytest.approx(20.0)  # 40 W x share 0.5


def test_without_scope_job_equals_host() -> None:
    ledger = Ledger([CPU], pue=1.0, history_size=4)
    ledger.record(1, [10.0], [5.0], CI_100)
    snap = ledger.snapshot()
    assert snap.energy_j == snap.host_energy_j == 10.0
    assert snap.devices[0].job_share == 1.0 and snap.devices[0].shared is None


def test_combined_coverage_is_a_union_bound() -> None:
    ledger = Ledger([GPU, CPU, RAM], pue=1.0, history_size=4)
    ledger.record(1, [10.0, 10.0, 10.0], [0.0, 0.0, 0.0], CI_100)
    expected = 1.0 - (1.0 - TDP_TABLE_BAND.coverage) - (1.0 - RAM_MODEL_BAND.coverage)
    assert ledger.snapshot().band_coverage == pytest.approx(expected)
    only_gpu = Ledger([GPU], pue=1.0, history_size=4)
    only_gpu.record(1, [10.0], [0.0], CI_100)
    assert only_gpu.snapshot().band_coverage is None  # a vendor figure states no coverage
    assert combined_coverage(ledger.snapshot().devices, [0.0, 0.0, 0.0]) is None


def test_mark_stalled_republishes_without_a_tick_and_keeps_totals() -> None:
    """Would catch: a stalled device left ``ok`` until a next reading that never comes, its last
    power extrapolated on, or the republished snapshot counted as a new reading (seq)."""
    gpu = DeviceInfo("GPU-1", HwType.GPU, "G", "NVIDIA", Method.NVML_ENERGY, note="counter")
    cpu = DeviceInfo("cpu", HwType.CPU, "C", "Acme", Method.TDP_MODEL)
    ledger = Ledger([gpu, cpu], pue=2.0, history_size=8)
    ledger.interval_s = 0.5
    ledger.record(S, [0.0, 0.0], [300.0, 20.0], CI)
    ledger.record(2 * S, [300.0, 20.0], [300.0, 20.0], CI)
    before = ledger.snapshot()
    ledger.mark_stalled([0], "stalled: a read did not return")
    after = ledger.snapshot()
    assert (after.seq, after.t_ns, after.interval_s) == (before.seq, before.t_ns, 0.5)
    assert after.energy_j == before.energy_j == pytest.approx(640.0)
    assert after.devices[0].status == "stalled"
    assert after.devices[0].power_w == 0.0
    assert after.devices[1].power_w == 20.0
    assert after.devices[0].info.note == "counter; stalled: a read did not return"
    assert after.power_w == pytest.approx(40.0)
    assert ledger.history().t_ns.size == 2  # no history row invented
    ledger.mark_stalled([], "nothing")
    assert ledger.snapshot() is after


def test_set_device_changes_method_and_band_at_the_next_record() -> None:
    gpu = DeviceInfo("GPU-1", HwType.GPU, "G", "NVIDIA", Method.NVML_ENERGY)
    ledger = Ledger([gpu], pue=1.0, history_size=8)
    ledger.record(S, [100.0], [100.0], CI)
    ledger.set_device(0, DeviceInfo("GPU-1", HwType.GPU, "G", "NVIDIA", Method.NVML_POWER))
    ledger.record(2 * S, [100.0], [100.0], CI)
    snap = ledger.snapshot()
    assert snap.devices[0].info.method is Method.NVML_POWER
    assert snap.methods == ("nvml-power",)
    assert not snap.measured
    assert snap.energy_high_j == pytest.approx(200.0 * 1.10)  # the new method's ±10 %


def test_a_tick_nobody_reads_builds_no_snapshot_and_readers_share_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Would catch: a snapshot built at every record although nobody reads it (the idle cost
    issue 13 bounds), or one built per reader (every training step paying for it)."""
    ledger = Ledger([GPU, CPU], pue=1.0, history_size=10)
    built: list[int] = []
    real_build = ledger._build
    monkeypatch.setattr(ledger, "_build", lambda state: built.append(state[0]) or real_build(state))
    for k in range(1, 6):
        ledger.record(k * S, [1.0, 1.0], [1.0, 1.0], CI_100)
    assert built == []
    first = ledger.snapshot()
    assert (first.seq, first.energy_j) == (5, 10.0)
    assert ledger.snapshot() is first
    assert built == [5]
    ledger.record(6 * S, [1.0, 1.0], [1.0, 1.0], CI_100)
    assert ledger.snapshot().seq == 6
    assert first.seq == 5  # an earlier snapshot never changes
    assert built == [5, 6]
    assert ledger.history().t_ns.tolist() == [k * S for k in range(1, 7)]  # the ring kept up
