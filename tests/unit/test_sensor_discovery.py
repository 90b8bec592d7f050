"""discover_sensors: which sensor measures what, why, and containment of failures."""

from __future__ import annotations

import logging
import pathlib

import pytest

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.sensors import discovery as discovery_mod
from hf_eco2ai.sensors.base import HwType
from hf_eco2ai.sensors.cpu_model import CpuTdpSensor
from hf_eco2ai.sensors.discovery import Discovery, discover_sensors
from hf_eco2ai.sensors.nvml import NvmlSensor
from hf_eco2ai.sensors.process_share import JobScopedSensor
from hf_eco2ai.sensors.ram_model import RamModelSensor
from hf_eco2ai.sensors.rapl import RaplSensor
from tests.fakes import fake_nvml
from tests.fakes.fake_amdsmi import FakeAmdSmi
from tests.fakes.fake_nvml import FakeGpu, FakeNVML

U = [f"GPU-{d * 8}-0000-0000-0000-000000000000" for d in "abcd"]


def kind(sensor: object) -> type:
    """The sensor's class, seen through the job-scope wrapper of host-scope sensors."""
    return type(sensor.inner) if isinstance(sensor, JobScopedSensor) else type(sensor)


def fake_gpus(n: int = 2) -> FakeNVML:
    return FakeNVML([FakeGpu(uuid=u) for u in U[:n]])


def zone(root: pathlib.Path, rel: str, name: str) -> None:
    d = root / rel
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text("1000\n")
    (d / "max_energy_range_uj").write_text("262143328850\n")


@pytest.fixture
def rapl_full(tmp_path: pathlib.Path) -> str:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0")
    zone(root, "intel-rapl:0/intel-rapl:0:0", "dram")
    return str(root)


@pytest.fixture
def rapl_packages_only(tmp_path: pathlib.Path) -> str:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0")
    zone(root, "intel-rapl:0/intel-rapl:0:0", "core")
    return str(root)


def run(config: CarbonConfig, tmp_path: pathlib.Path, **kw: object) -> Discovery:
    args: dict[str, object] = {
        "rapl_root": str(tmp_path / "no-powercap"),
        "nvml": FakeNVML([]),
        "amdsmi": FakeAmdSmi([]),
        "environ": {},
        "cgroup_root": str(tmp_path / "no-cgroup"),
        "proc_cgroup": str(tmp_path / "no-self-cgroup"),
        "nvidia_probe": lambda: None,
    }
    args.update(kw)
    return discover_sensors(config, **args)  # type: ignore[arg-type]


def methods(found: Discovery) -> list[tuple[str, str]]:
    return [(d.hw_type.value, d.method.value) for s in found.sensors for d in s.devices]


def text(found: Discovery) -> str:
    return "\n".join(found.notes)


def test_cpu_only_machine_gets_models_and_says_why(tmp_path: pathlib.Path) -> None:
    found = run(CarbonConfig(), tmp_path)
    assert [kind(s) for s in found.sensors] == [CpuTdpSensor, RamModelSensor]
    assert methods(found) == [("cpu", "tdp-model"), ("memory", "ram-model")]
    notes = text(found)
    assert "GPU: NVML: no NVIDIA GPU found" in notes
    assert f"RAPL: {tmp_path / 'no-powercap'} not present" in notes
    assert "CPU: estimated (no RAPL package counter): TDP model" in notes
    assert "RAM: estimated (no RAPL dram domain): RAM model" in notes
    found.close()


def test_gpus_and_full_rapl_are_all_measured(tmp_path: pathlib.Path, rapl_full: str) -> None:
    found = run(CarbonConfig(), tmp_path, nvml=fake_gpus(), rapl_root=rapl_full)
    assert [kind(s) for s in found.sensors] == [NvmlSensor, RaplSensor]
    assert methods(found) == [
        ("gpu", "nvml-energy"),
        ("gpu", "nvml-energy"),
        ("cpu", "rapl"),
        ("memory", "rapl"),
    ]
    assert all(d.measured for s in found.sensors for d in s.devices)
    notes = text(found)
    assert "GPU: NVML: 2 GPU(s)" in notes
    assert "CPU: measured by RAPL package counters" in notes
    assert "RAM: measured by the RAPL dram counter" in notes
    found.close()


def test_rapl_without_dram_adds_the_ram_model(
    tmp_path: pathlib.Path, rapl_packages_only: str
) -> None:
    found = run(CarbonConfig(cpu_tdp=150), tmp_path, rapl_root=rapl_packages_only)
    assert methods(found) == [("cpu", "rapl"), ("memory", "ram-model")]
    assert "cpu_tdp=150 W unused" in text(found)


def test_rapl_permission_denied_falls_back_to_tdp_model_and_logs_once(
    tmp_path: pathlib.Path,
    rapl_full: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = RaplSensor.try_create

    def denied(root: str, **kw: object) -> tuple[RaplSensor | None, str]:
        def opener(path: str) -> str:
            if path.endswith("energy_uj"):
                raise PermissionError(13, "Permission denied", path)
            return pathlib.Path(path).read_text()

        return real(root, opener=opener, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(discovery_mod.RaplSensor, "try_create", denied)
    with caplog.at_level(logging.INFO, logger="hf_eco2ai.sensors.discovery"):
        found = run(CarbonConfig(cpu_tdp=100), tmp_path, rapl_root=rapl_full)
    assert methods(found) == [("cpu", "tdp-model"), ("memory", "ram-model")]
    assert "RAPL: permission denied on" in text(found)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "permission denied" in warnings[0].getMessage()
    cpu = found.sensors[0]
    assert isinstance(cpu, CpuTdpSensor)
    assert cpu.tdp_source.startswith("cpu_tdp override 100 W")


def test_track_flags(tmp_path: pathlib.Path, rapl_full: str) -> None:
    found = run(
        CarbonConfig(track_gpu=False, track_cpu=False, track_ram=False),
        tmp_path,
        nvml=fake_gpus(),
        rapl_root=rapl_full,
    )
    assert found.sensors == ()
    assert "GPU: not tracked (track_gpu=false)" in found.notes
    assert "CPU/RAM: not tracked (track_cpu=false, track_ram=false)" in found.notes

    found = run(CarbonConfig(track_gpu=False, track_cpu=False), tmp_path, rapl_root=rapl_full)
    assert methods(found) == [("memory", "rapl")]
    assert "CPU: not tracked (track_cpu=false)" in found.notes

    found = run(CarbonConfig(track_gpu=False, track_ram=False), tmp_path)
    assert methods(found) == [("cpu", "tdp-model")]
    assert "RAM: not tracked (track_ram=false)" in found.notes


def test_only_local_rank_zero_measures_the_host(tmp_path: pathlib.Path, rapl_full: str) -> None:
    found = run(CarbonConfig(), tmp_path, local_rank=1, nvml=fake_gpus(4), rapl_root=rapl_full)
    assert [kind(s) for s in found.sensors] == [NvmlSensor]
    assert "local rank 0 only (this process is local rank 1)" in text(found)


def test_local_ranks_split_shared_gpus(tmp_path: pathlib.Path) -> None:
    env = {"LOCAL_WORLD_SIZE": "4"}
    found = run(CarbonConfig(), tmp_path, local_rank=2, nvml=fake_gpus(4), environ=env)
    assert [d.hw_id for d in found.sensors[0].devices] == [U[2]]
    found = run(
        CarbonConfig(), tmp_path, local_rank=2, nvml=fake_gpus(4), environ={"LOCAL_WORLD_SIZE": "x"}
    )
    assert len(found.sensors[0].devices) == 4


def test_gpu_devices_config_selects(tmp_path: pathlib.Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3,2"}
    found = run(
        CarbonConfig(gpu_devices=["1"], track_cpu=False, track_ram=False),
        tmp_path,
        nvml=fake_gpus(4),
        environ=env,
    )
    (gpu,) = found.sensors
    assert [d.hw_id for d in gpu.devices] == [U[2]]
    assert gpu.devices[0].hw_type is HwType.GPU


@pytest.mark.parametrize(
    ("target", "attr", "label"),
    [
        (NvmlSensor, "try_create", "GPU"),
        (RaplSensor, "try_create", "RAPL"),
        (CpuTdpSensor, "create", "CPU"),
    ],
)
def test_one_failing_sensor_is_contained(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    target: type,
    attr: str,
    label: str,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(target, attr, boom)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.sensors.discovery"):
        found = run(CarbonConfig(), tmp_path, nvml=fake_gpus())
    assert f"{label}: sensor creation failed (RuntimeError: kaput); left out" in found.notes
    assert any("kaput" in r.getMessage() for r in caplog.records)
    assert RamModelSensor in [kind(s) for s in found.sensors]


def test_failing_ram_model_is_contained(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no psutil")

    monkeypatch.setattr(discovery_mod, "RamModelSensor", boom)
    found = run(CarbonConfig(), tmp_path)
    assert methods(found) == [("cpu", "tdp-model")]
    assert "RAM: sensor creation failed (RuntimeError: no psutil); left out" in found.notes


def test_close_closes_every_sensor_and_swallows_errors() -> None:
    closed: list[str] = []

    class Good:
        devices = ()

        def read(self, index: int) -> None:
            raise AssertionError

        def close(self) -> None:
            closed.append("good")

    class Bad(Good):
        def close(self) -> None:
            raise RuntimeError("close failed")

    Discovery(sensors=(Bad(), Good()), notes=()).close()  # type: ignore[arg-type]
    assert closed == ["good"]


def test_defaults_on_this_machine_never_raise() -> None:
    found = discover_sensors(CarbonConfig())
    try:
        assert found.notes
        kinds = {d.hw_type for s in found.sensors for d in s.devices}
        assert HwType.CPU in kinds
        assert HwType.MEMORY in kinds
        for s in found.sensors:
            for i, d in enumerate(s.devices):
                r = s.read(i)
                assert r.power_w >= 0.0
                assert (r.energy_j is None) != d.method.measured
    finally:
        found.close()


@pytest.mark.parametrize(
    "nvml",
    [
        FakeNVML(init_error=fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND),
        FakeNVML(init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED),
    ],
    ids=["library-missing", "driver-not-loaded"],
)
def test_nvml_unusable_with_nvidia_devices_present_is_a_warning_and_a_note(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, nvml: FakeNVML
) -> None:
    """Would catch: a machine with NVIDIA GPUs whose NVML is missing reporting CPU + RAM only,
    with nothing above INFO saying the GPUs (usually most of the energy) were not measured."""
    with caplog.at_level(logging.INFO, logger="hf_eco2ai"):
        found = run(CarbonConfig(), tmp_path, nvml=nvml, nvidia_probe=lambda: "/dev/nvidia0")
    assert {d.hw_type for s in found.sensors for d in s.devices} == {HwType.CPU, HwType.MEMORY}
    missing = [n for n in found.notes if n.startswith("GPU: NOT MEASURED")]
    assert len(missing) == 1, found.notes
    assert "/dev/nvidia0" in missing[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("NOT MEASURED" in r.getMessage() and "GPU" in r.getMessage() for r in warnings)


def test_nvml_unusable_without_nvidia_devices_stays_quiet(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Would catch: every CPU-only machine warned about GPUs it does not have."""
    nvml = FakeNVML(init_error=fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        found = run(CarbonConfig(), tmp_path, nvml=nvml, nvidia_probe=lambda: None)
    assert not any("NOT MEASURED" in n for n in found.notes)
    assert not [r for r in caplog.records if "NVML" in r.getMessage()]


def test_nvidia_hardware_probe_reads_dev_and_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    monkeypatch.setattr(discovery_mod.glob, "glob", lambda pattern: [])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert discovery_mod.nvidia_hardware() == f"{smi} on PATH"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert discovery_mod.nvidia_hardware() is None
    monkeypatch.setattr(
        discovery_mod.glob, "glob", lambda pattern: ["/dev/nvidiactl", "/dev/nvidia0"]
    )
    assert discovery_mod.nvidia_hardware() == "/dev/nvidia0"
