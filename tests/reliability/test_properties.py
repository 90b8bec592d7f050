"""Property-based tests (hypothesis): config parsing and the sampler/ledger integration.

Invariants checked on every generated case:

* config: any text in any ``OTEL_PYTHON_HF_ECO2AI_*`` variable gives a valid config or a
  ``ConfigError`` naming the variable, never another exception; valid numbers round-trip;
* sampler + ledger, fed readings with faults (failed reads, counters jumping or restarting,
  NaN power): energy and emissions are finite, never negative, never decreasing, never more
  than the highest power seen over the elapsed time, and the totals are the sum of the windows
  between snapshots (a counter glitching *back* for one read is the sensor's to filter, see
  ``test_sensor_faults.py::test_nvml_counter_glitch_is_not_counted`` and
  ``test_rapl_backward_glitch_is_not_read_as_a_wrap``);
* ledger alone: totals = PUE × Σ recorded (positive) increments, emissions = Σ increment × PUE ×
  intensity of its own interval.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.config import CarbonConfig, ConfigError, env_var_name, field_names, field_specs
from hf_eco2ai.config_fields import Number
from hf_eco2ai.energy_ledger import J_PER_KWH, Ledger
from hf_eco2ai.energy_windows import measure_window
from hf_eco2ai.sampling_thread import Sampler
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError
from tests.fakes.synthetic import FakeClock

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------- config
@SETTINGS
@given(name=st.sampled_from(field_names()), raw=st.text(max_size=40))
def test_any_env_text_gives_a_config_or_one_clear_error(name: str, raw: str) -> None:
    var = env_var_name(name)
    try:
        config = CarbonConfig.from_env({var: raw})
    except ConfigError as err:
        error: ConfigError | None = err
    else:
        error = None
    if error is not None:
        assert error.field_name == name
        assert var in str(error) and "allowed:" in str(error)
        return
    value = getattr(config, name)
    if isinstance(value, float):
        assert math.isfinite(value)
    assert config.sources[name] == f"env {var}"


NUMBERS = {  # float fields with closed bounds, read from the one field table
    spec.name: (float(spec.kind.lo), float(spec.kind.hi))
    for spec in field_specs()
    if isinstance(spec.kind, Number) and not spec.kind.integer and not spec.kind.lo_open
}


@SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(NUMBERS)))
def test_valid_numbers_round_trip_and_out_of_range_is_refused(
    data: st.DataObject, name: str
) -> None:
    lo, hi = NUMBERS[name]
    value = data.draw(st.floats(lo, hi, allow_nan=False))
    config = CarbonConfig.from_env({env_var_name(name): repr(value)})
    assert getattr(config, name) == value
    outside = data.draw(
        st.one_of(
            st.floats(max_value=lo, exclude_max=True, allow_nan=False),
            st.floats(min_value=hi, exclude_min=True),
        )
    )
    with pytest.raises(ConfigError, match=env_var_name(name)):
        CarbonConfig.from_env({env_var_name(name): repr(outside)})


# ---------------------------------------------------------------------------------- sampler
@dataclass(frozen=True)
class Step:
    dt: float
    watts: float
    event: str  # ok, error, jump, restart, nan


STEPS = st.lists(
    st.builds(
        Step,
        dt=st.floats(0.001, 5.0),
        watts=st.floats(0.0, 2000.0),
        event=st.sampled_from(["ok"] * 4 + ["error", "jump", "restart", "nan"]),
    ),
    min_size=1,
    max_size=40,
)


class Device:
    """One device replaying ``steps``: a counter device (``counter``) or a power-only one."""

    def __init__(self, steps: list[Step], counter: bool) -> None:
        self.steps = steps
        self.counter = counter
        method = Method.NVML_ENERGY if counter else Method.NVML_POWER
        self._devices = (DeviceInfo("d", HwType.GPU, "Replay", "Test", method),)
        self.k = -1
        self.true_j = 0.0
        self.origin = 5e6  # the counter's value at the start (J since the driver loaded)

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return self._devices

    def read(self, index: int) -> Reading:
        self.k += 1
        if self.k == 0:
            return Reading(0.0, self.origin if self.counter else None)
        step = self.steps[self.k - 1]
        self.true_j += step.watts * step.dt
        if step.event == "restart":
            self.origin = -self.true_j  # the counter restarts at 0 now
        energy = self.origin + self.true_j
        if step.event == "error":
            raise SensorError("injected")
        if step.event == "jump":
            energy += 1e12
        power = float("nan") if step.event == "nan" else step.watts
        return Reading(power, energy if self.counter else None)

    def close(self) -> None:
        pass


@SETTINGS
@given(steps=STEPS, counter=st.booleans(), pue=st.floats(1.0, 3.0))
# found by hypothesis: a subnormal energy (5e-324 J) is > 0 but is 0.0 kWh (ZeroDivisionError)
@example(steps=[Step(1.0, 5e-324, "ok"), Step(1.0, 5e-324, "ok")], counter=False, pue=1.0)
# found by hypothesis: after a jump the float counter near 1e12 J resolves only ~1e-4 J
@example(
    steps=[Step(1.4528376112221228, 1.0, e) for e in ("ok", "jump", "jump")], counter=True, pue=1.0
)
def test_sampler_totals_stay_finite_monotonic_bounded_and_sum_of_windows(
    steps: list[Step], counter: bool, pue: float
) -> None:
    clock = FakeClock()
    device = Device(steps, counter)
    ci = CarbonIntensity(250.0, "XX", "config")

    class Intensity:
        def current(self) -> CarbonIntensity:
            return ci

        def maybe_refresh(self, now: float) -> None:
            pass

        def close(self) -> None:
            pass

    ledger = Ledger(device.devices, pue=pue, history_size=100)
    sampler = Sampler([device], ledger, interval_s=1.0, intensity=Intensity(), clock=clock)
    sampler.tick()
    snaps = [ledger.snapshot()]
    elapsed = 0.0
    for step in steps:
        clock.advance(step.dt)
        elapsed += step.dt
        sampler.tick()
        snap = ledger.snapshot()
        previous = snaps[-1]
        for value in (snap.energy_j, snap.emissions_g, snap.power_w):
            assert math.isfinite(value) and value >= 0.0
        assert snap.energy_j >= previous.energy_j
        assert snap.emissions_g >= previous.emissions_g
        snaps.append(snap)
    final = snaps[-1]
    peak = max(s.watts for s in steps)
    # a counter read as a float near 1e12 J (after a jump) resolves only ~1e-4 J: each
    # increment taken from it may be off by a few units in the last place
    resolution = 4 * math.ulp(device.origin + device.true_j + 1e12) if counter else 0.0
    bound = pue * peak * elapsed * (1 + 1e-9) + 1e-6 + pue * resolution * len(steps)
    assert final.energy_j <= bound
    windows = [measure_window(a, a.t_ns, b, b.t_ns) for a, b in itertools.pairwise(snaps)]
    assert math.isclose(
        sum(w.energy_j for w in windows), final.energy_j, rel_tol=1e-9, abs_tol=1e-9
    )
    assert math.isclose(
        sum(w.emissions_g for w in windows), final.emissions_g, rel_tol=1e-9, abs_tol=1e-12
    )
    if all(s.event == "ok" for s in steps) and counter:
        assert math.isclose(final.energy_j, pue * device.true_j, rel_tol=1e-9, abs_tol=1e-6)


# ---------------------------------------------------------------------------------- ledger
@SETTINGS
@given(
    records=st.lists(
        st.tuples(
            st.lists(st.floats(-100.0, 1e6), min_size=2, max_size=2),
            st.floats(0.0, 2000.0),
        ),
        max_size=50,
    ),
    pue=st.floats(1.0, 3.0),
)
def test_ledger_totals_are_the_sum_of_recorded_intervals(
    records: list[tuple[list[float], float]], pue: float
) -> None:
    devices = [
        DeviceInfo("g", HwType.GPU, "G", "V", Method.NVML_ENERGY),
        DeviceInfo("c", HwType.CPU, "C", "V", Method.TDP_MODEL),
    ]
    ledger = Ledger(devices, pue=pue, history_size=10)  # the ring buffer wraps: totals do not
    energy = emissions = 0.0
    last = ledger.snapshot()
    for k, (deltas, intensity) in enumerate(records):
        ledger.record((k + 1) * 10**9, deltas, [0.0, 0.0], CarbonIntensity(intensity, "XX", "x"))
        positive = sum(d for d in deltas if d > 0)
        energy += positive
        emissions += positive * pue * intensity / J_PER_KWH
        snap = ledger.snapshot()
        assert snap.energy_j >= last.energy_j and snap.emissions_g >= last.emissions_g
        last = snap
    assert math.isclose(last.energy_j, pue * energy, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(last.emissions_g, emissions, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(
        sum(last.energy_by_type.values()), last.energy_j, rel_tol=1e-9, abs_tol=1e-9
    )
