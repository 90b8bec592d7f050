"""RaplSensor against temporary powercap sysfs trees."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from hf_eco2ai.sensors import rapl as rapl_mod
from hf_eco2ai.sensors.base import HwType, Method, Sensor, SensorError
from hf_eco2ai.sensors.rapl import RaplSensor

MAX = 262_143_328_850  # a real max_energy_range_uj (Skylake-SP)


def zone(
    root: pathlib.Path, rel: str, name: str, energy: int = 0, max_range: int | None = MAX
) -> pathlib.Path:
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    if max_range is not None:
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def set_energy(d: pathlib.Path, uj: int) -> None:
    (d / "energy_uj").write_text(f"{uj}\n")


def cpuinfo(tmp: pathlib.Path, vendor: str = "GenuineIntel", model: str = "Intel Xeon") -> str:
    p = tmp / "cpuinfo"
    p.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: {model}\n")
    return str(p)


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two sockets, each package with core/uncore/dram subzones, plus psys and an MMIO twin."""
    root = tmp_path / "powercap"
    for s in (0, 1):
        zone(root, f"intel-rapl:{s}", f"package-{s}", 1_000_000 * (s + 1))
        zone(root, f"intel-rapl:{s}/intel-rapl:{s}:0", "core", 5)
        zone(root, f"intel-rapl:{s}/intel-rapl:{s}:1", "uncore", 5)
        zone(root, f"intel-rapl:{s}/intel-rapl:{s}:2", "dram", 500_000 * (s + 1), 65_712_999_613)
    zone(root, "intel-rapl:2", "psys", 77)
    zone(root, "intel-rapl-mmio:0", "package-0", 1)
    (root / "intel-rapl").mkdir()  # the control-type directory, no energy_uj
    return root


def test_absent_root_gives_reason(tmp_path: pathlib.Path) -> None:
    sensor, reason = RaplSensor.try_create(str(tmp_path / "nope"))
    assert sensor is None
    assert reason == f"RAPL: {tmp_path / 'nope'} not present"
    assert RaplSensor.create(str(tmp_path / "nope")) is None


def test_empty_root_gives_reason(tmp_path: pathlib.Path) -> None:
    sensor, reason = RaplSensor.try_create(str(tmp_path))
    assert sensor is None
    assert "no dram or package domain" in reason


def test_sockets_packages_and_dram_kept_nested_and_psys_skipped(
    server: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    sensor, note = RaplSensor.try_create(str(server), cpuinfo_path=cpuinfo(tmp_path))
    assert sensor is not None
    assert isinstance(sensor, Sensor)
    assert [d.hw_id for d in sensor.devices] == ["package-0", "package-1", "dram-0", "dram-1"]
    assert [d.hw_type for d in sensor.devices] == [HwType.CPU] * 2 + [HwType.MEMORY] * 2
    assert all(d.method is Method.RAPL and d.measured for d in sensor.devices)
    assert all(d.vendor == "Intel" for d in sensor.devices)
    assert sensor.devices[0].name == "Intel Xeon"
    assert sensor.devices[2].name == "DRAM (package 0)"
    assert sensor.kinds() == {"package", "dram"}
    joined = " ".join(sensor.notes)
    assert "psys" in joined
    assert "core" in joined
    assert "uncore" in joined
    assert "mmio" in joined
    assert "package-0" in note
    assert "dram" in note


def test_energy_in_joules_and_power_from_two_reads(server: pathlib.Path) -> None:
    clock = Clock()
    sensor = RaplSensor.create(str(server), clock=clock)
    assert sensor is not None
    pkg0 = server / "intel-rapl:0"
    set_energy(pkg0, 1_000_000 + 50_000_000)  # +50 J
    clock.t += 0.5
    r = sensor.read(0)
    assert r.energy_j == pytest.approx(50.0)
    assert r.power_w == pytest.approx(100.0)
    set_energy(pkg0, 1_000_000 + 80_000_000)  # +30 J in 1 s
    clock.t += 1.0
    r = sensor.read(0)
    assert r.energy_j == pytest.approx(80.0)
    assert r.power_w == pytest.approx(30.0)
    r = sensor.read(0)  # no time passed: power kept, energy unchanged
    assert r.energy_j == pytest.approx(80.0)
    assert r.power_w == pytest.approx(30.0)
    assert sensor.read(1).energy_j == 0.0  # package-1 did not move
    sensor.close()


def test_wrap_around_is_unwrapped_and_monotonic(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", MAX - 10_000_000)  # 10 J before the wrap
    clock = Clock()
    sensor = RaplSensor.create(str(root), clock=clock)
    assert sensor is not None
    totals = []
    for raw in (MAX - 4_000_000, 6_000_000, 26_000_000):  # +6 J, wrap +10 J, +20 J
        set_energy(pkg, raw)
        clock.t += 1.0
        totals.append(sensor.read(0).energy_j)
    assert totals == pytest.approx([6.0, 16.0, 36.0])
    assert sensor.read(0).power_w == pytest.approx(20.0)


def test_without_max_range_a_backwards_step_is_a_restart(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 90_000_000, max_range=None)
    sensor = RaplSensor.create(str(root), clock=Clock())
    assert sensor is not None
    assert "unreadable" in sensor.devices[0].note
    set_energy(pkg, 5_000_000)  # restarted from 0, now at 5 J
    assert sensor.read(0).energy_j == pytest.approx(5.0)


def test_permission_denied_at_creation_gives_reason(server: pathlib.Path) -> None:
    def opener(path: str) -> str:
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return pathlib.Path(path).read_text()

    sensor, reason = RaplSensor.try_create(str(server), opener=opener)
    assert sensor is None
    assert reason.startswith(f"RAPL: permission denied on {server / 'intel-rapl:0' / 'energy_uj'}")


def test_energy_file_replaced_by_directory_is_unreadable(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0")
    (pkg / "energy_uj").unlink()
    (pkg / "energy_uj").mkdir()
    sensor, reason = RaplSensor.try_create(str(root))
    assert sensor is None
    assert "cannot read" in reason
    assert "energy_uj" in reason


def test_unreadable_dram_only_keeps_packages(server: pathlib.Path) -> None:
    def opener(path: str) -> str:
        if ":2/energy_uj" in path:
            raise PermissionError(13, "Permission denied", path)
        return pathlib.Path(path).read_text()

    sensor, note = RaplSensor.try_create(str(server), opener=opener)
    assert sensor is not None
    assert sensor.kinds() == {"package"}
    assert "permission denied" in note


@pytest.fixture
def world_readable_tree() -> Iterator[pathlib.Path]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="hf-eco2ai-rapl-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_real_permission_denied_as_unprivileged_user(world_readable_tree: pathlib.Path) -> None:
    """The kernel's 0400 root-only energy_uj, read by a process that is not root."""
    root = world_readable_tree / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 123)
    for p in (world_readable_tree, root, pkg):
        p.chmod(0o755)
    (pkg / "name").chmod(0o444)
    (pkg / "max_energy_range_uj").chmod(0o444)
    (pkg / "energy_uj").chmod(0o400 if os.geteuid() == 0 else 0o000)
    if os.geteuid() != 0:
        sensor, reason = RaplSensor.try_create(str(root))
        assert sensor is None
        assert reason.startswith("RAPL: permission denied on")
        return
    # root ignores file modes: drop to "nobody" in a forked child, which runs our code as is
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            sensor, reason = RaplSensor.try_create(str(root))
            os.write(w, f"{sensor is None}|{reason}".encode())
        except BaseException as exc:
            os.write(w, f"error|{exc!r}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    if out.startswith("error|"):
        pytest.skip(f"cannot drop privileges here: {out}")
    assert out.startswith(f"True|RAPL: permission denied on {pkg / 'energy_uj'}"), out


def test_read_errors_are_sensor_errors(server: pathlib.Path) -> None:
    sensor = RaplSensor.create(str(server))
    assert sensor is not None
    pkg0 = server / "intel-rapl:0"
    (pkg0 / "energy_uj").write_text("not a number\n")
    with pytest.raises(SensorError, match="unexpected content"):
        sensor.read(0)
    (pkg0 / "energy_uj").write_text("-5\n")
    with pytest.raises(SensorError, match="negative"):
        sensor.read(0)
    (pkg0 / "energy_uj").unlink()
    with pytest.raises(SensorError, match="vanished"):
        sensor.read(0)
    set_energy(pkg0, 1_000_000 + 3_000_000)  # back: the sampler's retry works
    assert sensor.read(0).energy_j == pytest.approx(3.0)


def test_permission_error_at_read_time_is_sensor_error(server: pathlib.Path) -> None:
    state = {"deny": False}

    def opener(path: str) -> str:
        if state["deny"] and path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return pathlib.Path(path).read_text()

    sensor = RaplSensor.create(str(server), opener=opener)
    assert sensor is not None
    state["deny"] = True
    with pytest.raises(SensorError, match="permission denied"):
        sensor.read(0)


@pytest.mark.parametrize(("include", "kinds"), [(("dram",), {"dram"}), (("package",), {"package"})])
def test_include_selects_domain_kinds(
    server: pathlib.Path, include: tuple[str, ...], kinds: set[str]
) -> None:
    sensor = RaplSensor.create(str(server), include=include)
    assert sensor is not None
    assert sensor.kinds() == kinds
    assert len(sensor.devices) == 2


def test_include_nothing_gives_none(server: pathlib.Path) -> None:
    sensor, reason = RaplSensor.try_create(str(server), include=())
    assert sensor is None
    assert reason == "RAPL: no domain kind requested"


@pytest.mark.parametrize("prefix", ["amd-rapl", "intel-rapl"])
def test_amd(tmp_path: pathlib.Path, prefix: str) -> None:
    root = tmp_path / "powercap"
    zone(root, f"{prefix}:0", "package-0", 10)
    zone(root, f"{prefix}:0/{prefix}:0:0", "core", 10)
    info = cpuinfo(tmp_path, "AuthenticAMD", "AMD EPYC 7763 64-Core Processor")
    sensor = RaplSensor.create(str(root), cpuinfo_path=info)
    assert sensor is not None
    assert [d.hw_id for d in sensor.devices] == ["package-0"]
    assert sensor.devices[0].vendor == "AMD"
    assert sensor.devices[0].name == "AMD EPYC 7763 64-Core Processor"


def test_vendor_from_zone_prefix_without_cpuinfo(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "amd-rapl:0", "package-0")
    sensor = RaplSensor.create(str(root), cpuinfo_path=str(tmp_path / "missing"))
    assert sensor is not None
    assert sensor.devices[0].vendor == "AMD"


def test_flat_sysfs_layout_with_symlinks_is_not_double_counted(tmp_path: pathlib.Path) -> None:
    """Real /sys/class/powercap lists every zone at the top level, nested ones included."""
    devices = tmp_path / "devices" / "intel-rapl"
    zone(devices, "intel-rapl:0", "package-0", 1)
    zone(devices, "intel-rapl:0/intel-rapl:0:0", "dram", 2)
    zone(devices, "intel-rapl:0/intel-rapl:0:1", "core", 3)
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl:0").symlink_to(devices / "intel-rapl:0")
    (root / "intel-rapl:0:0").symlink_to(devices / "intel-rapl:0" / "intel-rapl:0:0")
    (root / "intel-rapl:0:1").symlink_to(devices / "intel-rapl:0" / "intel-rapl:0:1")
    sensor = RaplSensor.create(str(root))
    assert sensor is not None
    assert [d.hw_id for d in sensor.devices] == ["package-0", "dram-0"]


def test_multi_die_packages_top_level_dram_and_odd_zones(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0-die-0")
    zone(root, "intel-rapl:1", "package-0-die-1")
    zone(root, "intel-rapl:2", "dram")
    zone(root, "intel-rapl:3", "mystery")
    zone(root, "intel-rapl:1/intel-rapl:1:0", "gpu")  # an unknown subzone
    nameless = root / "intel-rapl:4"
    nameless.mkdir()
    sensor, note = RaplSensor.try_create(str(root))
    assert sensor is not None
    assert [d.hw_id for d in sensor.devices] == ["package-0-die-0", "package-0-die-1", "dram-2"]
    assert "mystery" in note
    assert "gpu" in note
    assert "no readable name" in note


def test_package_named_oddly_gets_socket_id(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:1", "package")
    zone(root, "intel-rapl:1/intel-rapl:1:0", "dram")
    sensor = RaplSensor.create(str(root))
    assert sensor is not None
    assert [d.hw_id for d in sensor.devices] == ["package-1", "dram-1"]


def test_unlistable_root_and_subdir(server: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[[str], list[str]] = os.listdir

    def listdir(path: str) -> list[str]:
        if str(path).endswith("intel-rapl:1"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(rapl_mod.os, "listdir", listdir)
    sensor = RaplSensor.create(str(server))
    assert sensor is not None
    assert [d.hw_id for d in sensor.devices] == ["package-0", "package-1", "dram-0"]

    def deny_all(path: str) -> list[str]:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(rapl_mod.os, "listdir", deny_all)
    sensor2, reason = RaplSensor.try_create(str(server))
    assert sensor2 is None
    assert "cannot list" in reason


def test_bad_max_range_is_ignored(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 100, max_range=None)
    (pkg / "max_energy_range_uj").write_text("garbage\n")
    sensor = RaplSensor.create(str(root))
    assert sensor is not None
    assert "unreadable" in sensor.devices[0].note


def test_garbage_counter_at_creation_gives_reason(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0")
    (pkg / "energy_uj").write_text("n/a\n")
    sensor, reason = RaplSensor.try_create(str(root))
    assert sensor is None
    assert reason.startswith("RAPL: unexpected content in")


SMALL = 4_000_000_000  # a 4 kJ range: wraps every 27 s at 150 W


def test_wrap_over_a_long_interval_is_counted_not_dropped(tmp_path: pathlib.Path) -> None:
    """15 s at 150 W (2,250 J) on a counter with a 4 kJ range: the counter drops by 1,750 J,
    less than half the range. Would catch: "a drop of less than half the range is a glitch",
    which dropped that interval (the run undercounting by 57-95 % silently)."""
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", SMALL - 1_000_000_000, max_range=SMALL)
    clock = Clock()
    sensor = RaplSensor.create(str(root), clock=clock)
    assert sensor is not None
    assert sensor.max_power_w == (rapl_mod.DEFAULT_MAX_POWER_W,)
    set_energy(pkg, (SMALL - 1_000_000_000 + 2_250_000_000) % SMALL)
    clock.t += 15.0
    assert sensor.read(0).energy_j == pytest.approx(2250.0)


def test_step_back_too_large_for_the_elapsed_time_is_a_glitch(tmp_path: pathlib.Path) -> None:
    """A drop of 1 µJ after 1 s would mean 262 kJ in 1 s if read as a wrap. Would catch: that
    counted, or the glitch value kept as the new baseline (the next good read then short)."""
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 50_000_000)
    clock = Clock()
    sensor = RaplSensor.create(str(root), clock=clock)
    assert sensor is not None
    set_energy(pkg, 49_999_999)
    clock.t += 1.0
    assert sensor.read(0).energy_j == 0.0
    set_energy(pkg, 150_000_000)  # the counter goes on: 100 J since the last good value
    clock.t += 1.0
    assert sensor.read(0).energy_j == pytest.approx(100.0)


def test_max_power_from_constraints_bounds_wraps_and_the_interval(tmp_path: pathlib.Path) -> None:
    """Would catch: the package's own power constraints ignored (a 65 W desktop part judged by
    a 500 W server bound), or no bound offered to the sampler."""
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 1_000_000, max_range=SMALL)
    (pkg / "constraint_0_max_power_uw").write_text("100000000\n")  # 100 W long term
    (pkg / "constraint_1_max_power_uw").write_text("150000000\n")  # 150 W short term
    (pkg / "constraint_2_max_power_uw").write_text("garbage\n")
    clock = Clock()
    sensor = RaplSensor.create(str(root), clock=clock)
    assert sensor is not None
    assert sensor.max_power_w == (pytest.approx(225.0),)  # 1.5 x 150 W
    assert sensor.max_interval_s == pytest.approx(4000.0 / 225.0 / 2)
    assert "225 W" in sensor.devices[0].note
    set_energy(pkg, 0)  # 1 J back after 10 s: as a wrap 3,999 J > 225 W x 10 s (< 500 W x 10 s)
    clock.t += 10.0
    assert sensor.read(0).energy_j == 0.0


def test_sampler_clamps_an_interval_too_long_to_unwrap(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Would catch: a sample interval over which the counter can wrap more than once (or wrap
    and pass its old value) accepted silently."""
    import logging

    from hf_eco2ai._logging import reset_once
    from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    from hf_eco2ai.energy_ledger import Ledger
    from hf_eco2ai.sampling_thread import Sampler

    reset_once()
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 0, max_range=SMALL)  # 4 kJ at 500 W: 8 s period
    sensor = RaplSensor.create(str(root))
    assert sensor is not None
    ci = StaticIntensity(CarbonIntensity(1.0, "XX", "t"))
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.sampling_thread"):
        for interval in (15.0, 15.0, 2.0):
            ledger = Ledger(sensor.devices, pue=1.0, history_size=4)
            sampler = Sampler([sensor], ledger, interval_s=interval, intensity=ci)
            assert sampler.interval_s == pytest.approx(min(interval, 4.0))
            assert ledger.interval_s == sampler.interval_s
    warnings = [r for r in caplog.records if "sample_interval" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "RaplSensor" in warnings[0].getMessage()
