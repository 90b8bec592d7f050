from __future__ import annotations

import pytest

from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.energy_ledger import Ledger, empty_snapshot
from hf_eco2ai.energy_windows import (
    extrapolation_limit_s,
    measure_window,
    shared_host_note,
    unmeasured_s,
)
from hf_eco2ai.sensors.bands import TDP_TABLE_BAND
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method
from hf_eco2ai.sensors.process_share import JobScope

GPU = DeviceInfo("GPU-1", HwType.GPU, "Fake GPU", "NVIDIA", Method.NVML_ENERGY)
CPU = DeviceInfo("cpu", HwType.CPU, "Fake CPU", "Acme", Method.TDP_MODEL)
CI = CarbonIntensity(360.0, "DE", "table:test@2024")
S = 1_000_000_000


def ledger_with_ticks() -> Ledger:
    ledger = Ledger([GPU, CPU], pue=1.5, history_size=100)
    ledger.record(0 * S, [0.0, 0.0], [100.0, 10.0], CI)
    for k in range(1, 11):
        ledger.record(k * S, [100.0, 10.0], [100.0, 10.0], CI)
    return ledger


def test_window_between_ticks_is_exact() -> None:
    ledger = Ledger([GPU, CPU], pue=1.5, history_size=100)
    ledger.record(0, [0.0, 0.0], [100.0, 10.0], CI)
    start = ledger.snapshot()
    for k in range(1, 5):
        ledger.record(k * S, [100.0, 10.0], [100.0, 10.0], CI)
    w = measure_window(start, 0, ledger.snapshot(), 4 * S)
    assert w.energy_j == pytest.approx(4 * 110 * 1.5)
    assert w.energy_by_type == pytest.approx({"gpu": 600.0, "cpu": 60.0})
    assert w.emissions_g == pytest.approx(660 / 3.6e6 * 360)
    assert w.mean_intensity == pytest.approx(360.0)
    assert w.duration_s == 4.0
    assert w.extrapolated is False
    assert (w.zone, w.source) == ("DE", "table:test@2024")
    assert w.methods == ("nvml-energy", "tdp-model")
    assert w.method == "nvml-energy,tdp-model"
    # band: +-5 % on GPU, the derived tdp-model band on CPU, with its coverage
    assert w.energy_low_j == pytest.approx(600 * 0.95 + 60 * TDP_TABLE_BAND.low)
    assert w.energy_high_j == pytest.approx(600 * 1.05 + 60 * TDP_TABLE_BAND.high)
    assert w.band_coverage == pytest.approx(TDP_TABLE_BAND.coverage)
    # nothing shared: the host scope equals the job scope
    assert w.host_energy_j == pytest.approx(w.energy_j)
    assert w.other_cpu_share is None and w.shared_devices == ()
    assert shared_host_note(w) is None


def test_window_ends_are_extrapolated_with_power() -> None:
    ledger = ledger_with_ticks()
    snap = ledger.snapshot()  # t = 10 s
    # a window from 10.2 s to 10.7 s with no tick inside: power x duration, flagged extrapolated
    w = measure_window(snap, int(10.2 * S), snap, int(10.7 * S))
    assert w.energy_j == pytest.approx(0.5 * 110 * 1.5)
    assert w.emissions_g == pytest.approx(0.5 * 110 * 1.5 / 3.6e6 * 360)
    assert w.extrapolated is True


def test_short_window_is_not_a_silent_zero() -> None:
    ledger = ledger_with_ticks()
    snap = ledger.snapshot()
    w = measure_window(snap, 10 * S, snap, 10 * S + 1_000_000)  # 1 ms
    assert w.energy_j > 0


def test_window_from_empty_snapshot_counts_nothing_before_first_tick() -> None:
    w = measure_window(empty_snapshot([], 1.0), 0, empty_snapshot([], 1.0), 5 * S)
    assert w.energy_j == 0.0
    assert w.mean_intensity == 0.0


def test_mismatched_snapshots_yield_zero_not_garbage() -> None:
    ledger = ledger_with_ticks()
    other = Ledger([GPU], pue=1.0, history_size=10)
    w = measure_window(other.snapshot(), 0, ledger.snapshot(), 10 * S)
    assert w.energy_j == 0.0


def test_end_before_start_clamps_to_zero() -> None:
    ledger = ledger_with_ticks()
    snap = ledger.snapshot()
    w = measure_window(snap, 11 * S, snap, 10 * S)
    assert w.energy_j == 0.0
    assert w.duration_s == 0.0


def test_windows_are_additive() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=100)
    ledger.record(0, [0.0], [100.0], CI)
    snaps = {0: ledger.snapshot()}
    for k in range(1, 7):
        ledger.record(k * S, [100.0], [100.0], CI)
        snaps[k] = ledger.snapshot()
    whole = measure_window(snaps[0], 0, snaps[6], 6 * S)
    a = measure_window(snaps[0], 0, snaps[2], int(2.5 * S))
    b = measure_window(snaps[2], int(2.5 * S), snaps[6], 6 * S)
    assert a.energy_j + b.energy_j == pytest.approx(whole.energy_j)


# ---------------------------------------------------------------------- host and job scopes
def test_window_keeps_both_scopes_and_the_cpu_sharing() -> None:
    ledger = Ledger([GPU, CPU], pue=1.0, history_size=100)
    ledger.record(0, [0.0, 0.0], [100.0, 10.0], CI)
    ledger.record(
        1 * S, [100.0, 10.0], [100.0, 10.0], CI, scope=[None, JobScope(1.0, False, 1.0, 1.0)]
    )
    start = ledger.snapshot()
    # next 2 s: another process keeps one core busy; we get 1 of 2 busy CPU seconds per second
    for k in (2, 3):
        ledger.record(
            k * S, [100.0, 20.0], [100.0, 20.0], CI, scope=[None, JobScope(0.5, True, 1.0, 2.0)]
        )
    w = measure_window(start, 1 * S, ledger.snapshot(), 3 * S)
    assert w.host_energy_j == pytest.approx(200 + 40)
    assert w.energy_j == pytest.approx(200 + 20)
    assert w.energy_by_type["cpu"] == pytest.approx(20.0)
    assert w.host_energy_by_type["cpu"] == pytest.approx(40.0)
    assert w.host_emissions_g > w.emissions_g
    assert (w.job_cpu_s, w.busy_cpu_s) == (2.0, 4.0)
    assert w.other_cpu_share == pytest.approx(0.5)
    assert w.shared_devices == ("cpu",)
    note = shared_host_note(w)
    assert note is not None and note.startswith("host was shared: 50 % of its busy CPU time")
    # the whole run: 1 of 5 busy seconds were others' (20 %): not above the threshold
    run = measure_window(empty_snapshot(ledger.devices, 1.0), 0, ledger.snapshot(), 3 * S)
    assert run.other_cpu_share == pytest.approx(2.0 / 5.0)
    assert shared_host_note(run, threshold=0.5) is None


def test_shared_gpu_is_named_in_the_note() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=10)
    ledger.record(0, [0.0], [100.0], CI)
    start = ledger.snapshot()
    ledger.record(1 * S, [100.0], [100.0], CI, scope=[JobScope(1.0, True)])
    w = measure_window(start, 0, ledger.snapshot(), 1 * S)
    assert w.shared_devices == ("GPU-1",)
    assert w.band_coverage is None  # measured only: the vendor figure states no coverage
    assert shared_host_note(w) == (
        "host was shared: other processes used GPU-1; job energy is this run's share"
    )


def stalled_ledger(interval_s: float = 0.5) -> Ledger:
    """Ticks every ``interval_s`` up to t = 2 s, then nothing (the sampler stalled)."""
    ledger = Ledger([GPU], pue=1.0, history_size=100)
    ledger.interval_s = interval_s
    for k in range(5):
        ledger.record(int(k * interval_s * S), [100.0 * interval_s if k else 0.0], [100.0], CI)
    return ledger


def test_a_stalled_sampler_is_a_counted_gap_not_an_extrapolation() -> None:
    """The last tick is at 2 s; the window ends at 10 s. Would catch: the 8 s without a reading
    filled in with the last power (800 J made up) and reported ``extrapolated: false``."""
    ledger = stalled_ledger()
    w = measure_window(ledger.snapshot(), 2 * S, ledger.snapshot(), 10 * S)  # no tick inside
    assert extrapolation_limit_s(ledger.snapshot()) == 2.0  # max(2 s, 3 x 0.5 s)
    assert w.gap_s == pytest.approx(6.0)  # 10 - (2 + 2)
    assert w.extrapolated is True
    assert w.energy_j == pytest.approx(200.0)  # 2 s extrapolated at 100 W, the rest not invented
    run = measure_window(empty_snapshot([GPU], 1.0), 0, ledger.snapshot(), 10 * S)
    assert run.gap_s == pytest.approx(6.0)
    assert run.extrapolated is True
    assert run.energy_j == pytest.approx(400.0)  # 2 s measured + 2 s extrapolated


def test_a_window_ending_within_a_few_intervals_of_a_tick_has_no_gap() -> None:
    """Would catch: an ordinary window end (up to one interval after the last tick, or a tick
    delayed by a busy machine) reported as a gap."""
    ledger = stalled_ledger()
    start = stalled_ledger().snapshot()
    w = measure_window(start, 2 * S, ledger.snapshot(), int(3.9 * S))
    assert w.gap_s == 0.0
    assert w.energy_j == pytest.approx(190.0)
    assert unmeasured_s(ledger.snapshot(), int(3.9 * S)) == 0.0
    assert unmeasured_s(ledger.snapshot(), 5 * S) == pytest.approx(1.0)


def test_window_with_ticks_inside_and_a_fresh_end_has_no_gap() -> None:
    ledger = Ledger([GPU], pue=1.0, history_size=100)
    ledger.interval_s = 1.0
    ledger.record(0, [0.0], [100.0], CI)
    start = ledger.snapshot()
    for k in range(1, 5):
        ledger.record(k * S, [100.0], [100.0], CI)
    w = measure_window(start, 0, ledger.snapshot(), int(4.5 * S))
    assert (w.gap_s, w.extrapolated) == (0.0, False)


def test_a_window_with_a_stalled_device_is_approximate() -> None:
    """Would catch: a window missing a stalled GPU's energy (the others still ticking, so no gap)
    reported as exact."""
    ledger = Ledger([GPU, CPU], pue=1.0, history_size=100)
    ledger.interval_s = 1.0
    ledger.record(0, [0.0, 0.0], [100.0, 10.0], CI)
    start = ledger.snapshot()
    ledger.record(1 * S, [100.0, 10.0], [100.0, 10.0], CI)
    ledger.mark_stalled([0], "stalled: test")
    ledger.record(2 * S, [0.0, 10.0], [0.0, 10.0], CI, status=["stalled", "ok"])
    w = measure_window(start, 0, ledger.snapshot(), 2 * S)
    assert (w.gap_s, w.extrapolated) == (0.0, True)
    assert w.energy_j == pytest.approx(120.0)
