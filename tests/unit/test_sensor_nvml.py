"""NvmlSensor against a fake NVML that follows pynvml's contract (and one real-GPU test)."""

from __future__ import annotations

import inspect
import logging
import sys
import types

import pynvml
import pytest

from hf_eco2ai.sensors.base import DeviceLostError, HwType, Method, Sensor, SensorError
from hf_eco2ai.sensors.nvml import NvmlSensor
from tests.fakes import fake_nvml
from tests.fakes.fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeGpu,
    FakeNVML,
    PowerTrace,
)

U = [f"GPU-{d * 8}-{d * 4}-{d * 4}-{d * 4}-{d * 12}" for d in "abcd"]  # 4 distinct UUIDs
MIG_A1 = "MIG-11111111-2222-3333-4444-555555555555"
MIG_A2 = "MIG-66666666-7777-8888-9999-000000000000"
NVML_LOG = "hf_eco2ai.sensors.nvml"


def four_gpus(**kw: object) -> FakeNVML:
    return FakeNVML([FakeGpu(uuid=u, power_w=100.0 * (i + 1)) for i, u in enumerate(U)], **kw)  # type: ignore[arg-type]


def create(fake: FakeNVML, env: dict[str, str] | None = None, **kw: object) -> NvmlSensor:
    sensor = NvmlSensor.create(nvml=fake, environ=env or {}, **kw)  # type: ignore[arg-type]
    assert sensor is not None
    return sensor


def ids(sensor: NvmlSensor) -> list[str]:
    return [d.hw_id for d in sensor.devices]


# ---------------------------------------------------------------------- the fake keeps the contract
USED = [
    "nvmlInit",
    "nvmlShutdown",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlErrorString",
]


def test_fake_matches_real_pynvml() -> None:
    fake = FakeNVML()
    for name in USED:
        real_sig = inspect.signature(getattr(pynvml, name))
        fake_sig = inspect.signature(getattr(fake, name))
        assert list(real_sig.parameters) == list(fake_sig.parameters), name
    codes = {n: getattr(pynvml, n) for n in dir(pynvml) if n.startswith("NVML_ERROR_")}
    for name, code in codes.items():
        if hasattr(fake_nvml, name):
            assert getattr(fake_nvml, name) == code, name
    for name in ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_UNKNOWN"):
        assert getattr(fake, name) == codes[name]
    assert fake.NVML_FI_DEV_POWER_INSTANT == pynvml.NVML_FI_DEV_POWER_INSTANT
    assert fake.NVML_SUCCESS == pynvml.NVML_SUCCESS
    for cls_name in ("NVMLError_NotSupported", "NVMLError_GpuIsLost", "NVMLError_LibraryNotFound"):
        assert hasattr(pynvml, cls_name)
        assert hasattr(fake, cls_name)
    # the constructor returns the per-code subclass, with .value, in both
    for mod in (pynvml, fake):
        err = mod.NVMLError(NVML_ERROR_GPU_IS_LOST)
        assert isinstance(err, mod.NVMLError_GpuIsLost)
        assert isinstance(err, mod.NVMLError)
        assert err.value == NVML_ERROR_GPU_IS_LOST
        assert mod.NVMLError_NotSupported().value == NVML_ERROR_NOT_SUPPORTED
        assert str(mod.NVMLError(NVML_ERROR_NOT_SUPPORTED)) == "Not Supported"


def test_fake_and_real_refuse_calls_before_init() -> None:
    with pytest.raises(pynvml.NVMLError):  # Uninitialized, or the library is absent
        pynvml.nvmlDeviceGetCount()
    fake = FakeNVML([FakeGpu(uuid=U[0])])
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    assert fake.nvmlDeviceGetCount() == 1
    fake.nvmlShutdown()
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetHandleByIndex(0)


def test_fake_lookups_and_units() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=123.4567, mig_uuids=[MIG_A1])])
    fake.nvmlInit()
    with pytest.raises(fake.NVMLError_NotFound):
        fake.nvmlDeviceGetHandleByUUID(U[0][:10])  # NVML itself does no prefix matching
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByUUID("")
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(3)
    h = fake.nvmlDeviceGetHandleByUUID(U[0].encode())
    assert fake.nvmlDeviceGetPowerUsage(h) == 123457  # integer mW
    mig = fake.nvmlDeviceGetHandleByUUID(MIG_A1)
    assert fake.nvmlDeviceIsMigDeviceHandle(mig) == 1
    assert fake.nvmlDeviceIsMigDeviceHandle(h) == 0
    assert fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig) == h
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(h)
    with pytest.raises(fake.NVMLError_NotSupported):
        fake.nvmlDeviceGetTotalEnergyConsumption(mig)
    fake.advance(2.0)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) == 5_000_000 + 246_913  # mJ, floored
    values = fake.nvmlDeviceGetFieldValues(h, [fake.NVML_FI_DEV_POWER_INSTANT, (999, 0)])
    assert values[0].nvmlReturn == 0
    assert values[0].value.uiVal == 123457
    assert values[1].nvmlReturn == NVML_ERROR_NOT_SUPPORTED
    with pytest.raises(ValueError):
        fake.advance(-1)


def test_power_trace_is_exact_and_callables_integrate_closely() -> None:
    trace = PowerTrace([(0, 50), (10, 50), (10, 300), (30, 100)])
    assert trace(-5) == 50
    assert trace(10) == 300
    assert trace(20) == 200
    assert trace(99) == 100
    assert trace.energy(0, 40) == pytest.approx(500 + 4000 + 1000)
    assert trace.energy(12, 5) == -trace.energy(5, 12)
    with pytest.raises(ValueError):
        PowerTrace([])
    with pytest.raises(ValueError):
        PowerTrace([(1, 0), (0, 0)])
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=lambda t: 100.0 + 10.0 * t)])
    fake.advance(3.0)
    assert fake.true_energy_j(0) == pytest.approx(345.0, rel=1e-9)
    assert fake.true_energy_j(U[0], 1.0, 2.0) == pytest.approx(115.0, rel=1e-9)
    with pytest.raises(KeyError):
        fake.true_energy_j("GPU-nope")


def test_fake_counter_period_and_averaged_power() -> None:
    gpu = FakeGpu(
        uuid=U[0],
        power_w=PowerTrace([(0, 100), (1, 100), (1, 300)]),
        counter_origin_mj=0,
        counter_period_s=0.1,
        power_average_s=1.0,
    )
    fake = FakeNVML([gpu])
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    fake.advance(0.05)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) == 0  # not refreshed yet
    fake.advance(0.1)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) == 10_000
    fake.advance(1.35)  # t = 1.5: mean over [0.5, 1.5] = 200 W, instant = 300 W
    assert fake.nvmlDeviceGetPowerUsage(h) == 200_000
    assert fake.nvmlDeviceGetFieldValues(h, [186])[0].value.uiVal == 300_000


# ---------------------------------------------------------------------- creation
def test_missing_nvml_module_gives_none_and_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with caplog.at_level(logging.INFO, logger=NVML_LOG):
        sensor, note = NvmlSensor.try_create(environ={})
    assert sensor is None
    assert "not importable" in note
    assert [r.name for r in caplog.records] == [NVML_LOG]


@pytest.mark.parametrize("code", [NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED])
def test_init_failure_gives_none_without_exception(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0])], init_error=code)
    with caplog.at_level(logging.INFO, logger=NVML_LOG):
        assert NvmlSensor.create(nvml=fake, environ={}) is None
    assert len(caplog.records) == 1
    assert "nvmlInit failed" in caplog.records[0].getMessage()


def test_real_pynvml_without_driver_gives_none() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert NvmlSensor.create(environ={}) is None
    else:  # a real GPU machine: covered by the gpu test
        pynvml.nvmlShutdown()
        pytest.skip("NVML works here")


def test_no_gpu_gives_none_and_shuts_nvml_down() -> None:
    fake = FakeNVML([])
    sensor, note = NvmlSensor.try_create(nvml=fake, environ={})
    assert sensor is None
    assert "no NVIDIA GPU" in note
    assert fake.init_count == 0
    assert fake.calls["nvmlShutdown"] == 1


def test_discovery_error_is_contained() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0])])
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetHandleByIndex"})
    sensor, note = NvmlSensor.try_create(nvml=fake, environ={})
    assert sensor is None
    assert "device 0 skipped" in note

    class Broken(FakeNVML):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("boom")

    sensor, note = NvmlSensor.try_create(nvml=Broken([FakeGpu(uuid=U[0])]), environ={})
    assert sensor is None
    assert "RuntimeError: boom" in note


def test_device_identity_and_protocol() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], name="NVIDIA H100 80GB HBM3")], strings_as_bytes=True)
    sensor = create(fake)
    assert isinstance(sensor, Sensor)
    (info,) = sensor.devices
    assert info.hw_id == U[0]
    assert info.name == "NVIDIA H100 80GB HBM3"
    assert info.vendor == "NVIDIA"
    assert info.hw_type is HwType.GPU
    assert info.method is Method.NVML_ENERGY
    assert info.measured
    assert info.extra["uuid"] == U[0]
    assert info.extra["cuda_index"] == "0"
    assert info.extra["power_source"] == "instant"
    assert "energy counter" in info.note


# ---------------------------------------------------------------------- readings and units
def test_energy_counter_in_joules_and_power_in_watts() -> None:
    gpu = FakeGpu(
        uuid=U[0],
        power_w=PowerTrace([(0, 100), (2, 100), (2, 400)]),
        utilization=87,
        memory_total=80 * 2**30,
        memory_used=3 * 2**30,
    )
    fake = FakeNVML([gpu])
    sensor = create(fake)
    first = sensor.read(0)
    assert first.energy_j == pytest.approx(5_000.0)  # counter origin 5e6 mJ
    fake.advance(3.0)  # 2 s at 100 W + 1 s at 400 W
    r = sensor.read(0)
    assert r.energy_j is not None
    assert r.energy_j - first.energy_j == pytest.approx(fake.true_energy_j(0), abs=1e-3)
    assert r.energy_j - first.energy_j == pytest.approx(600.0, abs=1e-3)
    assert r.power_w == pytest.approx(400.0)
    assert r.utilization == pytest.approx(0.87)
    assert (r.memory_used, r.memory_limit) == (3 * 2**30, 80 * 2**30)


def test_instant_field_preferred_over_averaged_power_usage() -> None:
    trace = PowerTrace([(0, 100), (1, 100), (1, 500)])
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=trace, power_average_s=1.0)])
    sensor = create(fake)
    fake.advance(1.5)
    assert sensor.read(0).power_w == pytest.approx(500.0)  # instant, not the 300 W mean
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 0


@pytest.mark.parametrize(
    ("kw", "gpu_kw"),
    [({"has_instant_field": False}, {}), ({}, {"instant_power": False})],
    ids=["old-binding", "field-not-supported"],
)
def test_power_usage_when_no_instant_field(kw: dict[str, bool], gpu_kw: dict[str, bool]) -> None:
    trace = PowerTrace([(0, 100), (1, 100), (1, 500)])
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=trace, power_average_s=1.0, **gpu_kw)], **kw)
    sensor = create(fake)
    assert sensor.devices[0].extra["power_source"] == "power-usage"
    assert "nvmlDeviceGetPowerUsage" in sensor.devices[0].note
    fake.advance(1.5)
    assert sensor.read(0).power_w == pytest.approx(300.0)  # the driver's 1 s average


def test_instant_field_failing_later_falls_back_to_power_usage() -> None:
    gpu = FakeGpu(uuid=U[0], power_w=250.0)
    fake = FakeNVML([gpu])
    sensor = create(fake)
    gpu.instant_power = False  # the driver stops answering the field
    assert sensor.read(0).power_w == pytest.approx(250.0)
    assert sensor.read(0).power_w == pytest.approx(250.0)
    assert fake.calls["nvmlDeviceGetFieldValues"] == 2  # probe + first read, then not again
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetFieldValues"})
    gpu.instant_power = True
    sensor2 = create(fake)
    assert sensor2.devices[0].extra["power_source"] == "power-usage"


def test_energy_not_supported_falls_back_to_power() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=70.0, energy_counter=False)])
    sensor = create(fake)
    info = sensor.devices[0]
    assert info.method is Method.NVML_POWER
    assert not info.measured
    assert "NOT_SUPPORTED" in info.note
    fake.advance(1.0)
    r = sensor.read(0)
    assert r.energy_j is None
    assert r.power_w == pytest.approx(70.0)


def test_counter_reading_zero_is_not_trusted() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], counter_origin_mj=0)])
    sensor = create(fake)  # at t=0 the counter reads 0: a dead counter looks like this
    assert sensor.devices[0].method is Method.NVML_POWER
    assert "reads 0" in sensor.devices[0].note
    assert sensor.read(0).energy_j is None


def test_energy_probe_other_error_falls_back_to_power() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0])])
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetTotalEnergyConsumption"}, end=0.5)
    sensor = create(fake)
    assert sensor.devices[0].method is Method.NVML_POWER
    assert "unreadable" in sensor.devices[0].note


def test_energy_not_supported_mid_run_switches_to_power_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=200.0)])
    sensor = create(fake)
    assert sensor.read(0).energy_j is not None
    fake.inject(
        0, NVML_ERROR_NOT_SUPPORTED, functions={"nvmlDeviceGetTotalEnergyConsumption"}, start=1.0
    )
    fake.advance(1.0)
    with caplog.at_level(logging.WARNING, logger=NVML_LOG):
        readings = [sensor.read(0) for _ in range(3)]
    assert all(r.energy_j is None and r.power_w == pytest.approx(200.0) for r in readings)
    assert len(caplog.records) == 1
    assert sensor.devices[0].method is Method.NVML_POWER
    assert "mid-run" in sensor.devices[0].note
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 3  # probe, read, failing read


def test_gpu_lost_raises_device_lost_and_other_gpus_go_on() -> None:
    fake = four_gpus()
    sensor = create(fake)
    fake.inject(1, NVML_ERROR_GPU_IS_LOST, start=5.0)
    fake.advance(4.0)
    assert sensor.read(1).energy_j is not None
    fake.advance(1.0)
    with pytest.raises(DeviceLostError, match="lost"):
        sensor.read(1)
    assert sensor.read(0).power_w == pytest.approx(100.0)


def test_gpu_lost_during_power_or_optional_reads_is_device_lost() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0]), FakeGpu(uuid=U[1], energy_counter=False)])
    sensor = create(fake)
    fake.inject(0, NVML_ERROR_GPU_IS_LOST, functions={"nvmlDeviceGetFieldValues"})
    fake.inject(0, NVML_ERROR_GPU_IS_LOST, functions={"nvmlDeviceGetPowerUsage"})
    with pytest.raises(DeviceLostError):
        sensor.read(0)
    fake.inject(1, NVML_ERROR_GPU_IS_LOST, functions={"nvmlDeviceGetUtilizationRates"})
    with pytest.raises(DeviceLostError):
        sensor.read(1)
    fake.clear_faults()
    fake.inject(1, NVML_ERROR_GPU_IS_LOST, functions={"nvmlDeviceGetMemoryInfo"})
    with pytest.raises(DeviceLostError):
        sensor.read(1)


def test_lost_detected_by_code_even_without_subclass() -> None:
    class Plain(FakeNVML):
        def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
            err = Exception.__new__(fake_nvml.NVMLError)
            err.value = NVML_ERROR_GPU_IS_LOST  # a bare NVMLError carrying the code
            raise err

    fake = Plain([FakeGpu(uuid=U[0], energy_counter=False)], has_instant_field=False)
    sensor = create(fake)
    with pytest.raises(DeviceLostError):
        sensor.read(0)


def test_other_nvml_errors_are_sensor_errors_and_recover() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], energy_counter=False)])
    sensor = create(fake)
    fake.inject(0, NVML_ERROR_UNKNOWN, start=1.0, end=2.0)
    fake.advance(1.0)
    with pytest.raises(SensorError) as info:
        sensor.read(0)
    assert not isinstance(info.value, DeviceLostError)
    fake.advance(1.0)
    assert sensor.read(0).power_w == pytest.approx(100.0)


def test_power_failure_with_energy_counter_derives_power_from_energy() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=300.0)], has_instant_field=False)
    clock = iter([10.0, 12.0, 12.0])
    sensor = create(fake)
    sensor._clock = lambda: next(clock)
    sensor.read(0)
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetPowerUsage"})
    fake.advance(2.0)
    assert sensor.read(0).power_w == pytest.approx(300.0)  # 600 J over 2 s
    assert sensor.read(0).power_w == pytest.approx(300.0)  # dt = 0: last value kept


def test_power_failure_on_first_read_is_a_sensor_error() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0])], has_instant_field=False)
    sensor = create(fake)
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetPowerUsage"})
    with pytest.raises(SensorError):
        sensor.read(0)


def test_counter_restart_keeps_energy_monotonic() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], power_w=100.0)])
    sensor = create(fake)
    e0 = sensor.read(0).energy_j
    fake.advance(1.0)
    fake.reset_counter(0)  # driver reload: counter back to 0
    fake.advance(1.0)
    e1 = sensor.read(0).energy_j
    assert e0 is not None
    assert e1 is not None
    assert e1 > e0
    fake.advance(1.0)
    e2 = sensor.read(0).energy_j
    assert e2 is not None
    assert e2 - e1 == pytest.approx(100.0)


def test_optional_reads_not_supported_are_none_and_not_retried() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], utilization=None)])
    sensor = create(fake)
    fake.inject(0, NVML_ERROR_NOT_SUPPORTED, functions={"nvmlDeviceGetMemoryInfo"})
    for _ in range(3):
        r = sensor.read(0)
        assert r.utilization is None
        assert r.memory_used is None
        assert r.memory_limit is None
        assert r.energy_j is not None
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 1
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 1


def test_optional_reads_transient_errors_are_none_and_retried() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], utilization=40)])
    sensor = create(fake)
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetUtilizationRates"}, end=1.0)
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetMemoryInfo"}, end=1.0)
    r = sensor.read(0)
    assert r.utilization is None
    assert r.memory_used is None
    fake.advance(1.0)
    r = sensor.read(0)
    assert r.utilization == pytest.approx(0.4)
    assert r.memory_used == 2**30


def test_close_shuts_down_once_and_read_after_close_fails() -> None:
    fake = four_gpus()
    sensor = create(fake)
    sensor.close()
    sensor.close()
    assert fake.calls["nvmlShutdown"] == 1
    assert fake.init_count == 0
    with pytest.raises(SensorError):
        sensor.read(0)


def test_shutdown_error_is_swallowed() -> None:
    fake = four_gpus()
    sensor = create(fake)
    fake.nvmlShutdown()  # someone else shut NVML down
    sensor.close()  # raises Uninitialized inside: logged, not raised


# ---------------------------------------------------------------------- which GPUs
@pytest.mark.parametrize(
    ("cvd", "expected"),
    [
        ("2,0", [U[2], U[0]]),
        ("3", [U[3]]),
        (f"{U[3]},{U[1]}", [U[3], U[1]]),
        ("GPU-cccc,1", [U[2], U[1]]),  # unique prefix, mixed with an index
        ("gpu-DDDDDDDD", [U[3]]),  # case-insensitive
        (" 1 , 2 ", [U[1], U[2]]),
        ("1,7,0", [U[1]]),  # an invalid entry ends the list, as in CUDA
        ("0,GPU-ffff,2", [U[0]]),
        ("0,garbage,2", [U[0]]),
    ],
)
def test_cuda_visible_devices_maps_cuda_index_to_uuid(cvd: str, expected: list[str]) -> None:
    sensor = create(four_gpus(), {"CUDA_VISIBLE_DEVICES": cvd})
    assert ids(sensor) == expected
    assert [d.extra["cuda_index"] for d in sensor.devices] == [str(i) for i in range(len(expected))]


def test_ambiguous_uuid_prefix_is_invalid() -> None:
    fake = FakeNVML(
        [FakeGpu(uuid="GPU-abc11111-0000"), FakeGpu(uuid="GPU-abc22222-0000")]
    )  # both start with GPU-abc
    sensor, note = NvmlSensor.try_create(nvml=fake, environ={"CUDA_VISIBLE_DEVICES": "GPU-abc"})
    assert sensor is None
    assert "names no GPU" in note


@pytest.mark.parametrize("cvd", ["", "  ", "-1", "NoDevFiles"])
def test_cuda_visible_devices_hiding_every_gpu_gives_none(cvd: str) -> None:
    fake = four_gpus()
    sensor, note = NvmlSensor.try_create(nvml=fake, environ={"CUDA_VISIBLE_DEVICES": cvd})
    assert sensor is None
    assert "no GPU visible" in note
    assert fake.init_count == 0


def test_without_cuda_visible_devices_all_gpus_in_nvml_order() -> None:
    sensor = create(four_gpus())
    assert ids(sensor) == U
    assert [d.extra["nvml_index"] for d in sensor.devices] == ["0", "1", "2", "3"]


def test_mixed_models_without_pci_bus_order_warns() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0], name="NVIDIA A100"), FakeGpu(uuid=U[1], name="NVIDIA T4")])
    _, note = NvmlSensor.try_create(nvml=fake, environ={})
    assert "CUDA_DEVICE_ORDER" in note
    _, note = NvmlSensor.try_create(nvml=fake, environ={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert "CUDA_DEVICE_ORDER" not in note


def test_selectors_index_into_visible_devices() -> None:
    sensor = create(four_gpus(), {"CUDA_VISIBLE_DEVICES": "3,1,2"}, selectors=["1", "0"])
    assert ids(sensor) == [U[1], U[3]]
    assert [d.extra["cuda_index"] for d in sensor.devices] == ["1", "0"]


def test_selectors_by_uuid_and_dedupe() -> None:
    sensor = create(four_gpus(), {"CUDA_VISIBLE_DEVICES": "2,3"}, selectors=[U[3], "1", U[0]])
    assert ids(sensor) == [U[3], U[0]]  # "1" is U[3] again; U[0] is named explicitly
    assert sensor.devices[0].extra["cuda_index"] == "1"
    assert "cuda_index" not in sensor.devices[1].extra  # not visible to CUDA in this process


def test_bad_selectors_are_noted_and_all_bad_gives_none() -> None:
    fake = four_gpus()
    sensor, note = NvmlSensor.try_create(["9", "GPU-ffff"], nvml=fake, environ={})
    assert sensor is None
    assert "only 4 GPU(s) visible" in note
    assert "'GPU-ffff' names no GPU" in note
    assert fake.init_count == 0
    sensor, note = NvmlSensor.try_create(["9", "2"], nvml=four_gpus(), environ={})
    assert sensor is not None
    assert ids(sensor) == [U[2]]


def test_mig_instances_report_parent_gpu_once_flagged() -> None:
    fake = FakeNVML(
        [
            FakeGpu(uuid=U[0]),
            FakeGpu(uuid=U[1], mig_uuids=[MIG_A1, MIG_A2], utilization=None),
        ]
    )
    sensor = create(fake, {"CUDA_VISIBLE_DEVICES": f"{MIG_A1},{MIG_A2}"})
    (info,) = sensor.devices
    assert info.hw_id == U[1]
    assert info.extra["mig"] == "true"
    assert info.extra["mig_uuids"] == f"{MIG_A1},{MIG_A2}"
    assert "MIG" in info.note
    assert info.method is Method.NVML_ENERGY
    fake.advance(1.0)
    assert sensor.read(0).energy_j is not None


def test_old_style_mig_entry_and_unknown_mig() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0]), FakeGpu(uuid=U[1])])
    sensor = create(fake, {"CUDA_VISIBLE_DEVICES": f"MIG-{U[1]}/1/0"})
    assert ids(sensor) == [U[1]]
    assert sensor.devices[0].extra["mig"] == "true"
    sensor, note = NvmlSensor.try_create(nvml=fake, environ={"CUDA_VISIBLE_DEVICES": MIG_A1})
    assert sensor is None
    assert "names no GPU" in note


def test_local_ranks_sharing_all_gpus_each_take_their_own() -> None:
    sensor = create(four_gpus(), local_rank=2, local_world_size=4)
    assert ids(sensor) == [U[2]]
    # each rank already restricted by CUDA_VISIBLE_DEVICES: nothing to do
    sensor = create(four_gpus(), {"CUDA_VISIBLE_DEVICES": "3"}, local_rank=3, local_world_size=4)
    assert ids(sensor) == [U[3]]
    # counts differ: measure what is visible (the note says how)
    sensor = create(four_gpus(), local_rank=1, local_world_size=2)
    assert ids(sensor) == U


def _fake_torch(uuids: list[str], initialized: bool = True) -> types.ModuleType:
    torch = types.ModuleType("torch")
    props = [types.SimpleNamespace(uuid=u.removeprefix("GPU-")) for u in uuids]
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_initialized=lambda: initialized,
        device_count=lambda: len(props),
        get_device_properties=lambda i: props[i],
    )
    return torch


def test_initialised_torch_decides_cuda_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch([U[3], U[0]]))
    sensor = create(four_gpus(), {"CUDA_VISIBLE_DEVICES": "0,1"}, selectors=["0"])
    assert ids(sensor) == [U[3]]


def test_torch_uuids_unknown_to_nvml_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(["GPU-ffffffff"]))
    sensor, note = NvmlSensor.try_create(nvml=four_gpus(), environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert sensor is not None
    assert ids(sensor) == [U[1]]
    assert "torch.cuda UUIDs" in note
    monkeypatch.setitem(sys.modules, "torch", _fake_torch([U[3]], initialized=False))
    assert ids(create(four_gpus(), {"CUDA_VISIBLE_DEVICES": "1"})) == [U[1]]
    broken = types.ModuleType("torch")  # no .cuda attribute at all
    monkeypatch.setitem(sys.modules, "torch", broken)
    assert ids(create(four_gpus(), {"CUDA_VISIBLE_DEVICES": "1"})) == [U[1]]


def test_name_failure_gives_generic_name() -> None:
    fake = FakeNVML([FakeGpu(uuid=U[0])])
    fake.inject(0, NVML_ERROR_UNKNOWN, functions={"nvmlDeviceGetName"})
    assert create(fake).devices[0].name == "NVIDIA GPU"


# ---------------------------------------------------------------------- a real GPU
def _nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.gpu
def test_real_gpu_reads_energy_and_power() -> None:
    if not _nvml_works():
        pytest.skip("no NVIDIA driver / GPU (pynvml.nvmlInit failed)")
    import time

    sensor, note = NvmlSensor.try_create()
    assert sensor is not None, note
    try:
        assert sensor.devices, note
        first = [sensor.read(i) for i in range(len(sensor.devices))]
        time.sleep(1.2)
        for i, info in enumerate(sensor.devices):
            assert info.hw_id.startswith(("GPU-", "MIG-"))
            assert info.vendor == "NVIDIA"
            r = sensor.read(i)
            assert 1.0 < r.power_w < 2000.0, (info, r)
            if info.method is Method.NVML_ENERGY:
                assert r.energy_j is not None
                assert first[i].energy_j is not None
                assert r.energy_j > first[i].energy_j
                # the counter's average over the window is plausible power
                assert 1.0 < (r.energy_j - first[i].energy_j) / 1.2 < 2000.0
            if r.memory_limit is not None:
                assert r.memory_used is not None
                assert 0 <= r.memory_used <= r.memory_limit
            if r.utilization is not None:
                assert 0.0 <= r.utilization <= 1.0
            print(info.hw_id, info.name, info.method.value, info.note, r)
    finally:
        sensor.close()


def test_close_skips_nvml_shutdown_under_a_read_stuck_in_the_driver() -> None:
    """Would catch: ``close()`` (``uninstrument()``) calling ``nvmlShutdown`` while another
    thread's NVML call never returned: with a wedged driver, the shutdown can block as well."""
    import threading

    fake = FakeNVML([FakeGpu("GPU-00000000-1111-2222-3333-444444444444")])
    sensor = NvmlSensor.create(nvml=fake, environ={})
    assert sensor is not None
    release = fake.hang(0, {"nvmlDeviceGetTotalEnergyConsumption"})
    reader = threading.Thread(target=lambda: sensor.read(0), daemon=True)
    reader.start()
    assert fake.hung.wait(10)
    sensor.close()
    assert fake.calls["nvmlShutdown"] == 0
    release.set()
    reader.join(10)
    healthy = NvmlSensor.create(nvml=FakeNVML([FakeGpu("GPU-1")]), environ={})
    assert healthy is not None
    healthy.close()
    assert healthy._nvml.calls["nvmlShutdown"] == 1
