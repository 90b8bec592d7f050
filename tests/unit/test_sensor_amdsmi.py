"""AmdSmiSensor against a fake amdsmi that follows the real library's contract.

The contract itself is recorded from the real package's source (``tools/amdsmi_contract.py`` ->
``tests/fakes/amdsmi_contract.json``, amdsmi 5.7.0 … 7.0.2): ``amdsmi`` installs from PyPI without
a GPU but cannot be imported without ROCm's ``libamd_smi.so``, so the live checks below skip on
machines without ROCm.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import logging
import pathlib
import sys
import types
from typing import Any

import pytest

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.sensors import amd_setup
from hf_eco2ai.sensors.amdsmi import AmdSmiSensor
from hf_eco2ai.sensors.base import DeviceLostError, HwType, Method, Sensor, SensorError
from hf_eco2ai.sensors.discovery import discover_sensors
from hf_eco2ai.sensors.nvml import NvmlSensor
from tests.fakes import fake_amdsmi
from tests.fakes.fake_amdsmi import (
    AMDSMI_STATUS_DRIVER_NOT_LOADED,
    AMDSMI_STATUS_NOT_FOUND,
    AMDSMI_STATUS_NOT_SUPPORTED,
    AMDSMI_STATUS_UNKNOWN_ERROR,
    FakeAmdGpu,
    FakeAmdHandle,
    FakeAmdSmi,
)
from tests.fakes.fake_nvml import FakeGpu, FakeNVML, PowerTrace

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTRACT = json.loads((ROOT / "tests/fakes/amdsmi_contract.json").read_text())
AMD_LOG = "hf_eco2ai.sensors.amdsmi"
U = [f"{i:08x}-0000-1000-80f6-{0xD3ED5A2A5E20 + i:012x}" for i in range(6)]
SERIAL = [f"0x{0x4B9E7F8A12345670 + i:016X}" for i in range(6)]


def gpu(i: int, **kw: Any) -> FakeAmdGpu:
    kw.setdefault("power_w", 100.0 * (i + 1))
    return FakeAmdGpu(uuid=U[i], bdf=f"0000:{0xC1 + i:02x}:00.0", asic_serial=SERIAL[i], **kw)


def four(**kw: Any) -> FakeAmdSmi:
    return FakeAmdSmi([gpu(i) for i in range(4)], **kw)


def create(fake: FakeAmdSmi, env: dict[str, str] | None = None, **kw: Any) -> AmdSmiSensor:
    sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ=env or {}, **kw)
    assert sensor is not None, note
    return sensor


def ids(sensor: AmdSmiSensor) -> list[str]:
    return [d.hw_id for d in sensor.devices]


def mi250(**kw: Any) -> list[FakeAmdGpu]:
    """One MI250X card: GCD 0 reports the card (300 W + 100 W), GCD 1 reports nothing."""
    common = {"name": "AMD Instinct MI250X", "current_power": False, "board_serial": "PCB-1"}
    common.update(kw)
    return [
        gpu(0, power_w=300.0, kfd_node=2, **common),
        gpu(1, power_w=100.0, kfd_node=3, reports_power=False, **common),
    ]


# ---------------------------------------------------------------------- the fake keeps the contract
def _fake_keys(fake: FakeAmdSmi, fn: str) -> list[str]:
    fake.amdsmi_init()
    try:
        out = getattr(fake, fn)(FakeAmdHandle(0))
    finally:
        fake.amdsmi_shut_down()
    return sorted(out) if isinstance(out, dict) else []


@pytest.mark.parametrize("release", sorted(CONTRACT))
def test_fake_matches_recorded_contract(release: str) -> None:
    record = CONTRACT[release]
    fake = FakeAmdSmi([gpu(0)], release=release)
    for fn, spec in record["functions"].items():
        if spec is None:
            assert not hasattr(fake, fn), (release, fn)
            continue
        assert list(inspect.signature(getattr(fake, fn)).parameters) == spec["params"], fn
        if spec["params"] == ["processor_handle"] and spec["keys"]:
            assert _fake_keys(fake, fn) == spec["keys"], (release, fn)
    for name, code in record["status_codes"].items():
        if hasattr(fake_amdsmi, name):
            assert getattr(fake_amdsmi, name) == code, name
            assert getattr(fake.amdsmi_wrapper, name) == code, name


def test_contract_record_is_what_the_tool_extracts() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import amdsmi_contract
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert set(amdsmi_contract.USED) == set(CONTRACT["7.0.2"]["functions"])
    src = "def amdsmi_get_energy_count(processor_handle):\n    return {'energy_accumulator': 1}\n"
    wrapper = "AMDSMI_STATUS_NOT_FOUND = 31\n"
    got = amdsmi_contract.extract(src, wrapper)
    assert got["functions"]["amdsmi_get_energy_count"] == {
        "params": ["processor_handle"],
        "keys": ["energy_accumulator"],
    }
    assert got["functions"]["amdsmi_init"] is None
    assert got["status_codes"] == {"AMDSMI_STATUS_NOT_FOUND": 31}


def test_fake_matches_installed_amdsmi_source() -> None:
    """Where the package is installed (no GPU needed): read its source, compare with the fake."""
    try:
        spec = importlib.util.find_spec("amdsmi")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        pytest.skip("amdsmi is not installed (pip install amdsmi)")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import amdsmi_contract
    finally:
        sys.path.remove(str(ROOT / "tools"))
    folder = pathlib.Path(spec.origin).parent
    live = amdsmi_contract.extract(
        (folder / "amdsmi_interface.py").read_text(), (folder / "amdsmi_wrapper.py").read_text()
    )
    release = importlib.metadata.version("amdsmi")
    fake = FakeAmdSmi([gpu(0)], release=release)
    for fn, spec_ in live["functions"].items():
        if spec_ is None:
            assert not hasattr(fake, fn), fn
            continue
        assert list(inspect.signature(getattr(fake, fn)).parameters) == spec_["params"], fn
        if spec_["params"] == ["processor_handle"] and spec_["keys"]:
            assert _fake_keys(fake, fn) == spec_["keys"], fn


def test_fake_matches_importable_amdsmi() -> None:
    """On a ROCm machine the module imports: compare its callables and exceptions."""
    try:
        import amdsmi  # type: ignore[import-not-found,unused-ignore]
    except Exception as exc:  # KeyError/OSError without libamd_smi.so
        pytest.skip(f"amdsmi is not importable here ({type(exc).__name__})")
    fake = FakeAmdSmi([gpu(0)], release=importlib.metadata.version("amdsmi"))
    for fn, spec in CONTRACT["7.0.2"]["functions"].items():
        if spec is None or not hasattr(amdsmi, fn):
            continue
        real = list(inspect.signature(getattr(amdsmi, fn)).parameters)
        assert real == list(inspect.signature(getattr(fake, fn)).parameters), fn
    assert issubclass(amdsmi.AmdSmiLibraryException, amdsmi.AmdSmiException)
    err = amdsmi.AmdSmiLibraryException(AMDSMI_STATUS_NOT_FOUND)
    assert err.get_error_code() == fake.AmdSmiLibraryException(31).get_error_code() == 31


def test_fake_units_na_and_init_contract() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=123.4, utilization=None, current_power=False)])
    with pytest.raises(fake.AmdSmiLibraryException) as info:
        fake.amdsmi_get_processor_handles()
    assert info.value.get_error_code() == fake_amdsmi.AMDSMI_STATUS_NOT_INIT
    assert "NOT_INIT" in str(info.value)
    fake.amdsmi_init()
    (h,) = fake.amdsmi_get_processor_handles()
    power = fake.amdsmi_get_power_info(h)
    assert power["current_socket_power"] == "N/A"
    assert power["average_socket_power"] == 123  # integer W
    assert power["socket_power"] == 123
    assert fake.amdsmi_get_gpu_activity(h)["gfx_activity"] == "N/A"
    assert fake.amdsmi_get_gpu_vram_usage(h) == {"vram_total": 65_520, "vram_used": 1_024}  # MB
    fake.advance(2.0)
    count = fake.amdsmi_get_energy_count(h)
    assert count["energy_accumulator"] == 1_000_000 + int(246.8 * 1e6 / 15.3)
    with pytest.raises(fake.AmdSmiParameterException):
        fake.amdsmi_get_power_info("not a handle")
    with pytest.raises(fake.AmdSmiParameterException):
        fake.amdsmi_init(2)  # the real one wants an AmdSmiInitFlags
    fake.amdsmi_shut_down()
    with pytest.raises(fake.AmdSmiLibraryException):
        fake.amdsmi_get_gpu_device_uuid(h)


# ---------------------------------------------------------------------- creation
def test_missing_module_gives_none_and_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    with caplog.at_level(logging.INFO, logger=AMD_LOG):
        sensor, note = AmdSmiSensor.try_create(environ={})
    assert sensor is None
    assert "not importable" in note
    assert [r.name for r in caplog.records] == [AMD_LOG]


def test_real_environment_without_rocm_gives_none() -> None:
    if "amdsmi" not in sys.modules and amd_setup.library_path() is not None:
        pytest.skip("ROCm's libamd_smi.so is here: covered by the gpu test")
    sensor, note = AmdSmiSensor.try_create(environ={})
    assert sensor is None
    assert note.startswith("AMD: ")


def test_installed_package_without_library_is_not_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.machinery.ModuleSpec("amdsmi", None, origin="/nowhere/amdsmi/__init__.py")
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    monkeypatch.setattr(amd_setup, "library_path", lambda env=None: None)
    sensor, note = AmdSmiSensor.try_create(environ={})
    assert sensor is None
    assert "libamd_smi.so is not" in note
    assert "amdsmi" not in sys.modules  # importing it would print to stdout and fail


def test_library_path_follows_rocm_path(tmp_path: pathlib.Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libamd_smi.so").write_bytes(b"")
    assert amd_setup.library_path({"ROCM_PATH": str(tmp_path)}) == str(
        tmp_path / "lib" / "libamd_smi.so"
    )


@pytest.mark.parametrize("code", [AMDSMI_STATUS_DRIVER_NOT_LOADED, 18])
def test_init_failure_gives_none(code: int, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAmdSmi([gpu(0)], init_error=code)
    with caplog.at_level(logging.INFO, logger=AMD_LOG):
        assert AmdSmiSensor.create(amdsmi=fake, environ={}) is None
    assert len(caplog.records) == 1
    assert "amdsmi_init failed" in caplog.records[0].getMessage()


def test_no_gpu_gives_none_and_shuts_down() -> None:
    fake = FakeAmdSmi([])
    sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ={})
    assert sensor is None
    assert "no AMD GPU found" in note
    assert fake.init_count == 0


def test_discovery_errors_are_contained() -> None:
    fake = FakeAmdSmi([gpu(0), gpu(1)])
    fake.inject(0, AMDSMI_STATUS_UNKNOWN_ERROR, functions={"amdsmi_get_gpu_device_uuid"})
    sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ={})
    assert sensor is not None
    assert ids(sensor) == [U[1]]
    assert "device 0 skipped" in note

    class Broken(FakeAmdSmi):
        def amdsmi_get_processor_handles(self) -> list[FakeAmdHandle]:
            raise RuntimeError("boom")

    broken = Broken([gpu(0)])
    sensor, note = AmdSmiSensor.try_create(amdsmi=broken, environ={})
    assert sensor is None
    assert "RuntimeError: boom" in note
    assert broken.init_count == 0


def test_identity_and_protocol() -> None:
    sensor = create(FakeAmdSmi([gpu(0, name="AMD Instinct MI300X", gfx="gfx942")]))
    assert isinstance(sensor, Sensor)
    (info,) = sensor.devices
    assert info.hw_id == U[0]
    assert info.name == "AMD Instinct MI300X"
    assert info.vendor == "AMD"
    assert info.attributes()["hw.vendor"] == "AMD"
    assert info.hw_type is HwType.GPU
    assert info.method is Method.AMDSMI_ENERGY
    assert info.measured
    assert info.uncertainty == pytest.approx(0.05)
    assert info.extra["bdf"] == "0000:c1:00.0"
    assert info.extra["hip_index"] == "0"
    assert info.extra["power_source"] == "current_socket_power"
    assert "card_share" not in info.extra


# ---------------------------------------------------------------------- readings and units
@pytest.mark.parametrize("release", ["5.7.0", "6.1.0", "6.3.0", "6.4.0", "7.0.2"])
def test_energy_counter_in_joules_for_every_release(release: str) -> None:
    trace = PowerTrace([(0, 100), (2, 100), (2, 400)])
    fake = FakeAmdSmi(
        [gpu(0, power_w=trace, utilization=87, vram_used_mb=3 * 1024)], release=release
    )
    sensor = create(fake)
    first = sensor.read(0)
    assert first.energy_j == pytest.approx(1_000_000 * 15.3e-6)
    fake.advance(3.0)
    r = sensor.read(0)
    assert r.energy_j is not None
    assert r.energy_j - first.energy_j == pytest.approx(fake.true_energy_j(0), abs=1e-3)
    assert r.energy_j - first.energy_j == pytest.approx(600.0, abs=1e-3)
    assert r.power_w == pytest.approx(400.0)
    assert r.utilization == pytest.approx(0.87)
    assert (r.memory_used, r.memory_limit) == (3 * 2**30, 65_520 * 2**20)


def test_average_power_used_where_current_is_na() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=250.0, current_power=False)], release="6.1.0")
    sensor = create(fake)
    assert sensor.devices[0].extra["power_source"] == "average_socket_power"
    assert sensor.read(0).power_w == pytest.approx(250.0)


@pytest.mark.parametrize("release", ["5.7.0", "6.0.0", "6.1.0", "6.4.0"])
def test_unconverted_0xffff_of_old_releases_is_absent_not_65535(release: str) -> None:
    fake = FakeAmdSmi(
        [gpu(0, power_w=250.0, current_power=False, utilization=None)], release=release
    )
    fake.amdsmi_init()
    raw = fake.amdsmi_get_power_info(FakeAmdHandle(0))
    if "current_socket_power" in raw:
        assert raw["current_socket_power"] == (0xFFFF if release < "6.2" else "N/A")
    fake.amdsmi_shut_down()
    sensor = create(fake)
    assert sensor.devices[0].extra["power_source"] == "average_socket_power"
    r = sensor.read(0)
    assert r.power_w == pytest.approx(250.0)
    assert r.utilization is None


def test_old_release_silent_die_reads_0xffff_and_is_still_paired() -> None:
    fake = FakeAmdSmi(mi250(), release="6.0.0")
    sensor = create(fake)
    assert [d.extra["card_share"] for d in sensor.devices] == ["0.5", "0.5"]
    assert sensor.read(1).power_w == pytest.approx(200.0)


def test_energy_not_supported_falls_back_to_power() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=70.0, energy_counter=False)])
    sensor = create(fake)
    info = sensor.devices[0]
    assert info.method is Method.AMDSMI_POWER
    assert not info.measured
    assert "NOT_SUPPORTED" in info.note
    fake.advance(1.0)
    r = sensor.read(0)
    assert r.energy_j is None
    assert r.power_w == pytest.approx(70.0)


def test_counter_reading_zero_or_na_is_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    sensor = create(FakeAmdSmi([gpu(0, counter_origin=0)]))
    assert sensor.devices[0].method is Method.AMDSMI_POWER
    assert "reads 0" in sensor.devices[0].note
    fake = FakeAmdSmi([gpu(0)])
    monkeypatch.setattr(
        fake,
        "amdsmi_get_energy_count",
        lambda processor_handle: {"energy_accumulator": "N/A", "counter_resolution": 15.3},
    )
    sensor = create(fake)
    assert sensor.devices[0].method is Method.AMDSMI_POWER
    assert sensor.read(0).energy_j is None


@pytest.mark.parametrize(
    "kw", [{"name": "AMD Instinct MI100"}, {"gfx": "gfx908", "name": "AMD Radeon Instinct"}]
)
def test_mi100_uses_power_from_the_start(kw: dict[str, str]) -> None:
    fake = FakeAmdSmi([gpu(0, power_w=290.0, energy_stuck=True, **kw)])
    sensor = create(fake)
    assert sensor.devices[0].method is Method.AMDSMI_POWER
    assert "amdsmi#38" in sensor.devices[0].note
    assert fake.calls["amdsmi_get_energy_count"] == 0
    fake.advance(1.0)
    assert sensor.read(0).energy_j is None


def test_stalled_counter_switches_to_power_without_losing_energy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeAmdSmi([gpu(0, power_w=200.0, energy_stuck=True)])
    clock = [0.0]
    sensor = create(fake)
    sensor._clock = lambda: clock[0]
    assert sensor.devices[0].method is Method.AMDSMI_ENERGY  # unknown model: counter trusted
    total, last_e, last_p = 0.0, None, None
    with caplog.at_level(logging.WARNING, logger=AMD_LOG):
        for _ in range(16):
            r = sensor.read(0)
            if last_p is not None:  # what the sampler does with a reading
                if r.energy_j is not None and last_e is not None:
                    total += r.energy_j - last_e
                else:
                    total += 0.5 * (r.power_w + last_p) * 1.0
            last_e, last_p = r.energy_j, r.power_w
            fake.advance(1.0)
            clock[0] += 1.0
    assert total == pytest.approx(fake.true_energy_j(0, 0, 15.0))
    assert sensor.devices[0].method is Method.AMDSMI_POWER
    assert "stalled" in sensor.devices[0].note
    assert len(caplog.records) == 1


def test_idle_counter_at_zero_power_is_not_called_stalled() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=PowerTrace([(0, 100), (0.5, 100), (0.5, 0)]))])
    clock = [0.0]
    sensor = create(fake)
    sensor._clock = lambda: clock[0]
    for _ in range(15):  # from t = 0.5 s the counter stands still, and so does the power
        sensor.read(0)
        fake.advance(1.0)
        clock[0] += 1.0
    assert sensor.devices[0].method is Method.AMDSMI_ENERGY


def test_32_bit_counter_wraps_monotonically() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=300.0, counter_bits=32, counter_origin=2**32 - 10_000)])
    clock = [0.0]
    sensor = create(fake)
    sensor._clock = lambda: clock[0]
    e0 = sensor.read(0).energy_j
    fake.advance(1.0)
    clock[0] = 1.0
    e1 = sensor.read(0).energy_j  # the raw counter wrapped past 2**32 in this second
    assert fake.amdsmi_get_energy_count is not None
    assert e0 is not None
    assert e1 is not None
    assert e1 - e0 == pytest.approx(300.0, abs=1e-3)
    fake.advance(1.0)
    clock[0] = 2.0
    e2 = sensor.read(0).energy_j
    assert e2 is not None
    assert e2 - e1 == pytest.approx(300.0, abs=1e-3)


def test_counter_restart_is_told_from_wrap_by_power() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=100.0, counter_origin=3_000_000_000)])
    clock = [0.0]
    sensor = create(fake)
    sensor._clock = lambda: clock[0]
    e0 = sensor.read(0).energy_j
    fake.advance(1.0)
    fake.reset_counter(0)  # driver reload: back to 0 (not a wrap, though above 2**31)
    fake.advance(1.0)
    clock[0] = 2.0
    e1 = sensor.read(0).energy_j
    assert e0 is not None
    assert e1 is not None
    assert e1 - e0 == pytest.approx(100.0, abs=1e-3)  # the second after the restart
    fake.advance(1.0)
    clock[0] = 3.0
    e2 = sensor.read(0).energy_j
    assert e2 is not None
    assert e2 - e1 == pytest.approx(100.0, abs=1e-3)


def test_small_step_back_is_a_glitch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAmdSmi([gpu(0)])
    values = iter([2_000_000, 2_000_000, 1_999_000, 2_100_000])
    monkeypatch.setattr(
        fake,
        "amdsmi_get_energy_count",
        lambda processor_handle: {
            "energy_accumulator": next(values),
            "counter_resolution": 1.0,
            "timestamp": 0,
        },
    )
    sensor = create(fake)  # the probe takes the first value
    assert [sensor.read(0).energy_j for _ in range(3)] == pytest.approx([2.0, 2.0, 2.1])


def test_lost_gpu_raises_device_lost_and_others_go_on() -> None:
    fake = four()
    sensor = create(fake)
    fake.inject(1, AMDSMI_STATUS_NOT_FOUND, start=5.0)
    fake.advance(4.0)
    assert sensor.read(1).energy_j is not None
    fake.advance(1.0)
    with pytest.raises(DeviceLostError, match="lost"):
        sensor.read(1)
    assert sensor.read(0).power_w == pytest.approx(100.0)
    fake.inject(2, AMDSMI_STATUS_DRIVER_NOT_LOADED, functions={"amdsmi_get_gpu_vram_usage"})
    with pytest.raises(DeviceLostError):
        sensor.read(2)


def test_other_errors_are_sensor_errors_and_recover() -> None:
    fake = FakeAmdSmi([gpu(0)])
    sensor = create(fake)
    fake.inject(0, AMDSMI_STATUS_UNKNOWN_ERROR, start=1.0, end=2.0)
    fake.advance(1.0)
    with pytest.raises(SensorError) as info:
        sensor.read(0)
    assert not isinstance(info.value, DeviceLostError)
    assert "\n" not in str(info.value)
    fake.advance(1.0)
    assert sensor.read(0).power_w == pytest.approx(100.0)


def test_energy_not_supported_mid_run_switches_to_power() -> None:
    fake = FakeAmdSmi([gpu(0, power_w=200.0)])
    sensor = create(fake)
    assert sensor.read(0).energy_j is not None
    fake.inject(0, AMDSMI_STATUS_NOT_SUPPORTED, functions={"amdsmi_get_energy_count"})
    readings = [sensor.read(0) for _ in range(3)]
    assert all(r.energy_j is None and r.power_w == pytest.approx(200.0) for r in readings)
    assert sensor.devices[0].method is Method.AMDSMI_POWER
    assert fake.calls["amdsmi_get_energy_count"] == 3  # probe, read, failing read


def test_na_power_mid_run_is_derived_from_the_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAmdSmi([gpu(0, power_w=300.0)])
    clock = [0.0]
    sensor = create(fake)
    sensor._clock = lambda: clock[0]
    sensor.read(0)
    real = fake.amdsmi_get_power_info
    monkeypatch.setattr(
        fake,
        "amdsmi_get_power_info",
        lambda processor_handle: {**real(processor_handle), "current_socket_power": "N/A"},
    )
    monkeypatch.setattr(sensor._dies[0], "power_keys", ("current_socket_power",))
    fake.advance(2.0)
    clock[0] = 2.0
    assert sensor.read(0).power_w == pytest.approx(300.0, rel=1e-6)  # 600 J over 2 s


def test_na_power_without_counter_is_an_error_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAmdSmi([gpu(0, energy_counter=False)])
    sensor = create(fake)
    monkeypatch.setattr(
        fake,
        "amdsmi_get_power_info",
        lambda processor_handle: dict.fromkeys(
            ("current_socket_power", "average_socket_power", "socket_power"), "N/A"
        ),
    )
    with pytest.raises(SensorError, match="N/A"):
        sensor.read(0)


def test_optional_reads_na_or_not_supported_are_none() -> None:
    fake = FakeAmdSmi([gpu(0, utilization=None)])
    sensor = create(fake)
    fake.inject(0, AMDSMI_STATUS_NOT_SUPPORTED, functions={"amdsmi_get_gpu_vram_usage"})
    for _ in range(3):
        r = sensor.read(0)
        assert r.utilization is None  # "N/A", never 0
        assert (r.memory_used, r.memory_limit) == (None, None)
        assert r.energy_j is not None
    assert fake.calls["amdsmi_get_gpu_activity"] == 3  # "N/A" may change: asked again
    assert fake.calls["amdsmi_get_gpu_vram_usage"] == 1  # NOT_SUPPORTED: not again


def test_optional_transient_errors_are_retried() -> None:
    fake = FakeAmdSmi([gpu(0, utilization=40)])
    sensor = create(fake)
    fake.inject(0, AMDSMI_STATUS_UNKNOWN_ERROR, functions={"amdsmi_get_gpu_activity"}, end=1.0)
    assert sensor.read(0).utilization is None
    fake.advance(1.0)
    assert sensor.read(0).utilization == pytest.approx(0.4)


def test_close_is_idempotent_and_read_after_close_fails() -> None:
    fake = four()
    sensor = create(fake)
    sensor.close()
    sensor.close()
    assert fake.calls["amdsmi_shut_down"] == 1
    assert fake.init_count == 0
    with pytest.raises(SensorError):
        sensor.read(0)
    sensor = create(fake)
    fake.amdsmi_shut_down()  # someone else shut amdsmi down
    sensor.close()  # NOT_INIT inside: logged, not raised


# ---------------------------------------------------------------------- MI250: two GCDs, one meter
def _energy(sensor: AmdSmiSensor, fake: FakeAmdSmi, seconds: float) -> list[float]:
    first = [sensor.read(i).energy_j for i in range(len(sensor.devices))]
    fake.advance(seconds)
    last = [sensor.read(i).energy_j for i in range(len(sensor.devices))]
    out = []
    for a, b in zip(first, last, strict=True):
        assert a is not None
        assert b is not None
        out.append(b - a)
    return out


def test_mi250_job_holding_both_gcds_counts_the_card_once() -> None:
    fake = FakeAmdSmi(mi250())
    sensor = create(fake)
    assert ids(sensor) == [U[0], U[1]]
    energies = _energy(sensor, fake, 10.0)
    assert sum(energies) == pytest.approx(fake.card_energy_j(0), abs=1e-3)  # 4000 J, not 8000
    assert energies == pytest.approx([2000.0, 2000.0], abs=1e-3)
    for info in sensor.devices:
        assert info.method is Method.AMDSMI_ENERGY
        assert info.extra["card_share"] == "0.5"
        assert info.extra["card_reporter"] == U[0]
        assert info.uncertainty == pytest.approx(0.25)
    assert sensor.read(1).power_w == pytest.approx(200.0)  # half of the card's 400 W


@pytest.mark.parametrize("visible", ["0", "1"])
def test_mi250_job_holding_one_gcd_is_charged_half_never_zero(visible: str) -> None:
    fake = FakeAmdSmi(mi250())
    sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ={"HIP_VISIBLE_DEVICES": visible})
    assert sensor is not None
    assert ids(sensor) == [U[int(visible)]]
    (energy,) = _energy(sensor, fake, 10.0)
    assert energy == pytest.approx(fake.card_energy_j(0) / 2, abs=1e-3)
    assert "by board serial" in note or visible == "0"


def test_mi250_pairing_by_asic_serial_or_enumeration_order() -> None:
    same = mi250(board_serial="N/A")
    same[1].asic_serial = same[0].asic_serial
    sensor, note = AmdSmiSensor.try_create(amdsmi=FakeAmdSmi(same), environ={})
    assert sensor is not None
    assert "by ASIC serial" in note
    assert len(sensor.devices) == 2
    sensor, note = AmdSmiSensor.try_create(amdsmi=FakeAmdSmi(mi250(board_serial="N/A")), environ={})
    assert sensor is not None
    assert "by enumeration order" in note
    assert [d.extra["card_share"] for d in sensor.devices] == ["0.5", "0.5"]


def test_silent_die_without_its_card_is_left_out_not_zero() -> None:
    silent = gpu(1, name="AMD Instinct MI250X", reports_power=False, kfd_node=1)
    other = gpu(0, name="AMD Instinct MI210", kfd_node=0)
    fake = FakeAmdSmi([other, silent])
    sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ={"HIP_VISIBLE_DEVICES": "1"})
    assert sensor is None
    assert "reports no power" in note
    assert fake.init_count == 0


def test_mi250_gcd_of_another_card_stays_whole() -> None:
    gpus = [*mi250(), gpu(2, name="AMD Instinct MI250X", board_serial="PCB-2", kfd_node=4)]
    sensor = create(FakeAmdSmi(gpus), {"HIP_VISIBLE_DEVICES": "2"})
    (info,) = sensor.devices
    assert info.hw_id == U[2]
    assert "card_share" not in info.extra


# ---------------------------------------------------------------------- which GPUs
def _ordered() -> FakeAmdSmi:
    """amdsmi enumerates in another order than HIP (KFD nodes): 3, 2, 1, 0."""
    return FakeAmdSmi([gpu(i, kfd_node=3 - i) for i in range(4)])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, [U[3], U[2], U[1], U[0]]),
        ({"HIP_VISIBLE_DEVICES": "0"}, [U[3]]),
        ({"CUDA_VISIBLE_DEVICES": "2,0"}, [U[1], U[3]]),
        ({"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "0"}, [U[2]]),  # HIP first
        ({"ROCR_VISIBLE_DEVICES": "1,3", "HIP_VISIBLE_DEVICES": "1"}, [U[0]]),
        ({"ROCR_VISIBLE_DEVICES": f"GPU-{SERIAL[2][2:]}"}, [U[2]]),  # a ROCm UUID
        ({"HIP_VISIBLE_DEVICES": U[1]}, [U[1]]),  # an amdsmi UUID
        ({"HIP_VISIBLE_DEVICES": "0,7,1"}, [U[3]]),  # the list ends at an invalid entry
        ({"HIP_VISIBLE_DEVICES": "0,GPU-ffffffff,1"}, [U[3]]),
    ],
)
def test_visible_devices_map_hip_index_to_identity(
    env: dict[str, str], expected: list[str]
) -> None:
    sensor = create(_ordered(), env)
    assert ids(sensor) == expected
    assert [d.extra["hip_index"] for d in sensor.devices] == [str(i) for i in range(len(expected))]


@pytest.mark.parametrize(
    "env",
    [{"HIP_VISIBLE_DEVICES": ""}, {"ROCR_VISIBLE_DEVICES": " "}, {"CUDA_VISIBLE_DEVICES": "-1"}],
)
def test_hiding_every_gpu_gives_none(env: dict[str, str]) -> None:
    fake = four()
    sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ=env)
    assert sensor is None
    assert "no AMD GPU visible" in note
    assert fake.init_count == 0


def test_words_that_hide_gpus_are_not_read_as_uuid_prefixes() -> None:
    fake = FakeAmdSmi([FakeAmdGpu(uuid="defe0000-0000-1000-80f6-000000000001", bdf="0000:c1:00.0")])
    for word in ("NoDevFiles", "-1"):  # "NoDevFiles" holds the hex letters d, e, f, e
        sensor, note = AmdSmiSensor.try_create(amdsmi=fake, environ={"HIP_VISIBLE_DEVICES": word})
        assert sensor is None, note
    assert ids(create(fake, {"HIP_VISIBLE_DEVICES": "GPU-defe"})) == [fake.gpus[0].uuid]


def test_pci_order_without_kfd_info() -> None:
    fake = FakeAmdSmi(
        [gpu(0, kfd_node=1), gpu(1, kfd_node=0)][::-1], release="6.1.0"
    )  # no kfd_info before 6.3: PCI bus order
    sensor = create(fake, {"HIP_VISIBLE_DEVICES": "0"})
    assert ids(sensor) == [U[0]]


def test_selectors_and_local_ranks() -> None:
    sensor = create(four(), {"HIP_VISIBLE_DEVICES": "3,1,2"}, selectors=["1", "0"])
    assert ids(sensor) == [U[1], U[3]]
    sensor = create(four(), {"HIP_VISIBLE_DEVICES": "2,3"}, selectors=[U[3], "1", U[0]])
    assert ids(sensor) == [U[3], U[0]]
    assert "hip_index" not in sensor.devices[1].extra
    sensor, note = AmdSmiSensor.try_create(["9", "GPU-ffff"], amdsmi=four(), environ={})
    assert sensor is None
    assert "only 4 AMD GPU(s) visible" in note
    assert "'GPU-ffff' names no AMD GPU" in note
    assert ids(create(four(), local_rank=2, local_world_size=4)) == [U[2]]
    assert ids(create(four(), local_rank=1, local_world_size=2)) == U[:4]


def _rocm_torch(bdfs: list[tuple[int, int]], initialized: bool = True) -> types.ModuleType:
    torch = types.ModuleType("torch")
    props = [
        types.SimpleNamespace(pci_domain_id=0, pci_bus_id=b, pci_device_id=d, uuid="")
        for b, d in bdfs
    ]
    torch.version = types.SimpleNamespace(hip="6.2", cuda=None)  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_initialized=lambda: initialized,
        device_count=lambda: len(props),
        get_device_properties=lambda i: props[i],
    )
    return torch


def test_initialised_rocm_torch_decides_by_bus_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _rocm_torch([(0xC4, 0), (0xC2, 0)]))
    sensor, note = AmdSmiSensor.try_create(amdsmi=four(), environ={"HIP_VISIBLE_DEVICES": "0"})
    assert sensor is not None
    assert ids(sensor) == [U[3], U[1]]
    assert "torch" in note
    monkeypatch.setitem(sys.modules, "torch", _rocm_torch([(0x99, 0)]))
    sensor, note = AmdSmiSensor.try_create(amdsmi=four(), environ={"HIP_VISIBLE_DEVICES": "2"})
    assert sensor is not None
    assert ids(sensor) == [U[2]]
    assert "not all known" in note


# ---------------------------------------------------------------------- discovery: mixed hosts
def _discover(tmp_path: pathlib.Path, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "rapl_root": str(tmp_path / "no-powercap"),
        "nvml": FakeNVML([]),
        "amdsmi": FakeAmdSmi([]),
        "environ": {},
        "cgroup_root": str(tmp_path / "no-cgroup"),
        "proc_cgroup": str(tmp_path / "no-self-cgroup"),
    }
    args.update(kw)
    config = args.pop("config", CarbonConfig())
    return discover_sensors(config, **args)


def test_mixed_nvidia_and_amd_host_gets_both_sensors(tmp_path: pathlib.Path) -> None:
    nv = FakeNVML([FakeGpu(uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000")])
    found = _discover(tmp_path, nvml=nv, amdsmi=FakeAmdSmi(mi250()))
    try:
        from hf_eco2ai.sensors.process_share import JobScopedSensor

        kinds = [
            type(s.inner) if isinstance(s, JobScopedSensor) else type(s) for s in found.sensors
        ][:2]
        assert kinds == [NvmlSensor, AmdSmiSensor]
        gpus = [(d.vendor, d.method.value) for s in found.sensors[:2] for d in s.devices]
        assert gpus == [
            ("NVIDIA", "nvml-energy"),
            ("AMD", "amdsmi-energy"),
            ("AMD", "amdsmi-energy"),
        ]
        notes = "\n".join(found.notes)
        assert "GPU: NVML: 1 GPU(s)" in notes
        assert "GPU: AMD: 2 GPU(s)" in notes
    finally:
        found.close()


def test_discovery_amd_off_missing_or_broken(tmp_path: pathlib.Path) -> None:
    found = _discover(tmp_path, config=CarbonConfig(track_gpu=False), amdsmi=FakeAmdSmi([gpu(0)]))
    assert not any(isinstance(s, AmdSmiSensor) for s in found.sensors)
    found = _discover(tmp_path)
    assert "GPU: AMD: no AMD GPU found" in found.notes

    class Exploding(FakeAmdSmi):
        def amdsmi_init(self, flag: Any = None) -> None:
            raise SystemError("deep failure")

    found = _discover(tmp_path, amdsmi=Exploding([gpu(0)]))
    assert any("amdsmi_init failed" in n for n in found.notes)
    assert any(isinstance(s, type(found.sensors[0])) for s in found.sensors)


def test_discovery_contains_a_crashing_amd_sensor(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(AmdSmiSensor, "try_create", boom)
    found = _discover(tmp_path)
    assert any("GPU (AMD): sensor creation failed (RuntimeError: bug)" in n for n in found.notes)
    assert found.sensors  # CPU and RAM still measured


# ---------------------------------------------------------------------- doctor, report schema
def test_doctor_shows_amd_gpus_like_nvidia_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hf_eco2ai import cli
    from hf_eco2ai.sensors import amdsmi as amdsmi_mod

    monkeypatch.setattr(amdsmi_mod, "import_amdsmi", lambda: (FakeAmdSmi(mi250()), ""))
    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY", "100")
    for var in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["doctor", "--seconds", "0.3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the GPUs only: the host's own CPU may be an AMD part too
    amd = [d for d in report["devices"] if d["hw.vendor"] == "AMD" and d["hw.type"] == "gpu"]
    assert [(d["hw.id"], d["method"], d["kind"]) for d in amd] == [
        (U[0], "amdsmi-energy", "measured"),
        (U[1], "amdsmi-energy", "measured"),
    ]
    assert amd[1]["power_w"] == pytest.approx(200.0)  # half of the MI250X card
    assert "1/2 of the card" in amd[1]["note"]
    cli.render_doctor(report, sys.stdout)
    out = capsys.readouterr().out
    assert "vendor" in out.splitlines()[3]
    assert "AMD Instinct MI250X" in out
    assert any(line.startswith("gpu") and " AMD " in line for line in out.splitlines())


def test_metrics_carry_vendor_amd_and_count_the_card_once() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    from hf_eco2ai.energy_monitor import EnergyMonitor
    from hf_eco2ai.telemetry.metrics import EnergyMetrics

    fake = FakeAmdSmi(mi250(utilization=55))
    sensor = create(fake)
    monitor = EnergyMonitor(
        CarbonConfig(),
        sensors=[sensor],
        intensity=StaticIntensity(CarbonIntensity(100.0, "FR", "config")),
    )
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    EnergyMetrics(provider.get_meter("t"), lambda: monitor)
    monitor.sampler.tick()  # the sampler's own step, without its thread or the wall clock
    fake.advance(10.0)
    monitor.sampler.tick()
    data = reader.get_metrics_data()
    got = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    energy = {p.attributes["hw.id"]: p for p in got["hw.energy"].data.data_points}
    assert set(energy) == {U[0], U[1]}
    for point in energy.values():
        assert point.attributes["hw.vendor"] == "AMD"
        assert point.attributes["hf_eco2ai.measurement.method"] == "amdsmi-energy"
    assert sum(p.value for p in energy.values()) == pytest.approx(fake.card_energy_j(0), rel=1e-6)
    util = got["hw.gpu.utilization"].data.data_points
    assert {p.attributes["hw.vendor"] for p in util} == {"AMD"}
    assert [p.value for p in util] == pytest.approx([0.55, 0.55])
    monitor.close()


def test_report_schema_knows_every_method() -> None:
    schema = json.loads((ROOT / "src/hf_eco2ai/data/report.schema.json").read_text())
    text_ = json.dumps(schema)
    for method in Method:
        assert f'"{method.value}"' in text_, method


# ---------------------------------------------------------------------- a real AMD GPU
@pytest.mark.gpu
def test_real_amd_gpu_reads_energy_and_power() -> None:
    if amd_setup.library_path() is None:
        pytest.skip("no ROCm (libamd_smi.so not found)")
    import time

    sensor, note = AmdSmiSensor.try_create()
    if sensor is None:
        pytest.skip(note)
    try:
        first = [sensor.read(i) for i in range(len(sensor.devices))]
        time.sleep(1.2)
        for i, info in enumerate(sensor.devices):
            assert info.vendor == "AMD"
            r = sensor.read(i)
            assert 1.0 < r.power_w < 2000.0, (info, r)
            if info.method is Method.AMDSMI_ENERGY:
                assert r.energy_j is not None
                assert first[i].energy_j is not None
                assert 1.0 < (r.energy_j - first[i].energy_j) / 1.2 < 2000.0
            print(info.hw_id, info.name, info.method.value, info.note, r)
    finally:
        sensor.close()
