"""The CPU TDP model: table lookup, host facts (affinity, cgroups), and the power formula."""

from __future__ import annotations

import collections
import csv
import importlib.resources
import logging
import pathlib
from collections.abc import Iterator

import pytest

from hf_eco2ai.sensors import cpu_model
from hf_eco2ai.sensors.bands import TDP_DEFAULT_BAND, TDP_TABLE_BAND
from hf_eco2ai.sensors.base import HwType, Method, Sensor, SensorError
from hf_eco2ai.sensors.cpu_model import (
    AFFINITY_REFRESH_S,
    DEFAULT_TDP_PER_CORE_W,
    IDLE_FRACTION,
    TDP_MODEL_DOC,
    UNKNOWN_CPU_UNCERTAINTY,
    CpuTdpSensor,
    TdpMatch,
    cgroup_cpu_limit,
    count_sockets,
    load_tdp_table,
    lookup_tdp,
    normalize_cpu_name,
    read_cpu_model,
    read_cpu_vendor,
)
from hf_eco2ai.sensors.process_share import FakeTree

CpuTimes = collections.namedtuple(
    "CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice"
)


def times(busy: float, idle: float) -> CpuTimes:
    return CpuTimes(busy, 0.0, 0.0, idle, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def write_cpuinfo(
    tmp: pathlib.Path, model: str | None, sockets: int = 1, vendor: str = "", vm: bool = False
) -> str:
    blocks = []
    for cpu in range(2 * sockets):
        lines = [f"processor\t: {cpu}"]
        if vm:
            lines.append("flags\t\t: fpu sse2 hypervisor avx")
        if vendor:
            lines.append(f"vendor_id\t: {vendor}")
        if model is not None:
            lines.append(f"model name\t: {model}")
        lines.append(f"physical id\t: {cpu // 2}")
        blocks.append("\n".join(lines))
    p = tmp / "cpuinfo"
    p.write_text("\n\n".join(blocks) + "\n")
    return str(p)


class Host:
    """Controls what the CPU model sees: per-CPU times, affinity, core counts, a clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, logical: int = 4, physical: int = 2):
        self.cpu = [times(0.0, 0.0) for _ in range(logical)]
        self.affinity = set(range(logical))
        self.t = 0.0
        self.fail = False
        counts = {True: logical, False: physical}
        monkeypatch.setattr(cpu_model.ProcStat, "cpu_lines", lambda stat: self._proc_stat())
        monkeypatch.setattr(
            cpu_model.ProcStat, "first_line", lambda stat: self._proc_stat().split(b"\n")[0]
        )
        monkeypatch.setattr(cpu_model.psutil, "cpu_count", lambda logical=True: counts[logical])
        monkeypatch.setattr(cpu_model.os, "sched_getaffinity", lambda pid: set(self.affinity))

    def _proc_stat(self) -> bytes:
        """``/proc/stat`` as the kernel writes it (clock ticks), for the CPUs as they stand."""
        if self.fail:
            raise OSError("no /proc/stat")
        hz = cpu_model._CLOCK_TICKS

        def line(name: str, c: CpuTimes) -> str:
            return f"{name} " + " ".join(str(round(v * hz)) for v in c)

        total = CpuTimes(*(sum(col) for col in zip(*self.cpu, strict=True)))
        lines = [line("cpu ", total)] + [line(f"cpu{i}", c) for i, c in enumerate(self.cpu)]
        return ("\n".join([*lines, "intr 1 2 3", "ctxt 9"]) + "\n").encode()

    def clock(self) -> float:
        return self.t

    def run(self, seconds: float, busy: dict[int, float]) -> None:
        """Advance ``seconds``; CPU i is busy for fraction ``busy[i]`` of it (others idle)."""
        self.t += seconds
        for i, c in enumerate(self.cpu):
            b = busy.get(i, 0.0) * seconds
            self.cpu[i] = times(c.user + b, c.idle + seconds - b)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    return Host(monkeypatch)


@pytest.fixture
def no_cgroup(tmp_path: pathlib.Path) -> dict[str, str]:
    return {"cgroup_root": str(tmp_path / "nocg"), "proc_cgroup": str(tmp_path / "nocg-self")}


# ---------------------------------------------------------------------- names and table
@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "intel xeon gold 6248"),
        ("AMD EPYC 7B13 64-Core Processor", "amd epyc 7b13"),
        ("Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz", "intel core i7-8550u"),
        ("AMD Ryzen 7 PRO 4750U with Radeon Graphics", "amd ryzen 7 pro 4750u"),
        ("Intel® Xeon® Platinum 8480+", "intel xeon platinum 8480+"),
        ("Intel Core i5+8400  (9M Cache, up to 4.00 GHz)", "intel core i5+8400"),
        ("  AMD   EPYC  ", "amd epyc"),
        ("", ""),
    ],
)
def test_normalize_cpu_name(raw: str, norm: str) -> None:
    assert normalize_cpu_name(raw) == norm


def test_shipped_table_loads_with_sane_values() -> None:
    table = load_tdp_table()
    assert len(table) > 4000
    assert all(0 < tdp <= 1000 for _, tdp in table.values())
    assert all(any(ch.isdigit() for ch in key) for key in table)
    text = importlib.resources.files("hf_eco2ai.sensors").joinpath("data/cpu_tdp.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["name", "tdp_w"]
    assert all(len(r) == 2 for r in rows)


@pytest.mark.parametrize(
    ("model", "name", "tdp", "exact"),
    [
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Intel Xeon Gold 6248", 150.0, True),
        ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", "Intel Xeon Gold 6248R", 205.0, True),
        ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763", 280.0, True),
        ("11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz", "Intel Core i7-1185G7", 28.0, False),
    ],
)
def test_lookup_shipped_table(model: str, name: str, tdp: float, exact: bool) -> None:
    assert lookup_tdp(model) == TdpMatch(name, tdp, exact)


def test_lookup_prefers_exact_then_longest_whole_word_substring() -> None:
    table = {
        normalize_cpu_name(n): (n, t)
        for n, t in [("Acme X1", 10.0), ("Acme X1 Pro", 30.0), ("X1", 5.0), ("Acme Z9", 99.0)]
    }
    assert lookup_tdp("Acme X1 Pro", table) == TdpMatch("Acme X1 Pro", 30.0, True)
    assert lookup_tdp("Acme(R) X1 Pro Max @ 3GHz", table) == TdpMatch("Acme X1 Pro", 30.0, False)
    assert lookup_tdp("Other X1 thing", table) == TdpMatch("X1", 5.0, False)
    assert lookup_tdp("Acme X10", table) is None  # 'x1' is not a whole word of 'x10'
    assert lookup_tdp("Acme", table) is None
    assert lookup_tdp("(R)", table) is None


def test_generic_names_match_nothing() -> None:
    for model in ("AMD EPYC", "Intel(R) Xeon(R) CPU @ 2.20GHz", "x86_64", "Neoverse-N1"):
        assert lookup_tdp(model) is None, model


# ---------------------------------------------------------------------- host facts
def test_cpuinfo_facts(tmp_path: pathlib.Path) -> None:
    path = write_cpuinfo(tmp_path, "AMD EPYC 7763 64-Core Processor", 2, "AuthenticAMD")
    assert read_cpu_model(path) == "AMD EPYC 7763 64-Core Processor"
    assert read_cpu_vendor(path) == "AMD"
    assert count_sockets(path) == 2
    intel = write_cpuinfo(tmp_path, "x", 1, "GenuineIntel")
    assert read_cpu_vendor(intel) == "Intel"
    other = write_cpuinfo(tmp_path, "x", 1, "HygonGenuine")
    assert read_cpu_vendor(other) == "HygonGenuine"
    missing = str(tmp_path / "missing")
    assert read_cpu_vendor(missing) is None
    assert count_sockets(missing) == 1


def test_cpu_model_falls_back_to_platform(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_model = write_cpuinfo(tmp_path, None)
    monkeypatch.setattr(cpu_model.platform, "processor", lambda: "arm")
    assert read_cpu_model(no_model) == "arm"
    monkeypatch.setattr(cpu_model.platform, "processor", lambda: "")
    assert read_cpu_model(no_model) is None


def test_real_host_facts_are_sane() -> None:
    assert count_sockets() >= 1
    model = read_cpu_model()
    assert model is None or isinstance(model, str)


def cgroup_v2(tmp: pathlib.Path, own: str, limits: dict[str, str]) -> dict[str, str]:
    root = tmp / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for rel, value in limits.items():
        d = root / rel if rel else root
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(value + "\n")
    self_cg = tmp / "self-cgroup"
    self_cg.write_text(f"0::{own}\n")
    return {"cgroup_root": str(root), "proc_cgroup": str(self_cg)}


def test_cgroup_v2_quota_tightest_ancestor(tmp_path: pathlib.Path) -> None:
    paths = cgroup_v2(
        tmp_path,
        "/kubepods/pod1/ctr",
        {"kubepods": "max 100000", "kubepods/pod1": "250000 100000", "kubepods/pod1/ctr": "max"},
    )
    assert cgroup_cpu_limit(**paths) == pytest.approx(2.5)


def test_cgroup_v2_namespaced_container_reads_its_root(tmp_path: pathlib.Path) -> None:
    # /proc/self/cgroup says "/" inside a cgroup namespace; the mount is the container's cgroup
    paths = cgroup_v2(tmp_path, "/", {"": "50000 100000"})
    assert cgroup_cpu_limit(**paths) == pytest.approx(0.5)


def test_cgroup_v2_no_limit_and_garbage(tmp_path: pathlib.Path) -> None:
    paths = cgroup_v2(tmp_path, "/a", {"a": "max 100000", "": "lots 0"})
    assert cgroup_cpu_limit(**paths) is None


def cgroup_v1(tmp: pathlib.Path, own: str, quota: str, period: str = "100000") -> dict[str, str]:
    root = tmp / "cg1"
    d = root / "cpu,cpuacct" / own.strip("/")
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text(quota + "\n")
    (d / "cpu.cfs_period_us").write_text(period + "\n")
    (d / "cpuacct.usage").write_text("0\n")
    self_cg = tmp / "self-cgroup"
    self_cg.write_text(f"4:memory:/x\n3:cpu,cpuacct:{own}\n1:name=systemd:/\nbad line\n")
    return {"cgroup_root": str(root), "proc_cgroup": str(self_cg)}


def test_cgroup_v1_cfs_quota(tmp_path: pathlib.Path) -> None:
    assert cgroup_cpu_limit(**cgroup_v1(tmp_path, "/docker/abc", "300000")) == pytest.approx(3.0)


@pytest.mark.parametrize(("quota", "period"), [("-1", "100000"), ("junk", "100000"), ("5", "0")])
def test_cgroup_v1_no_quota(tmp_path: pathlib.Path, quota: str, period: str) -> None:
    assert cgroup_cpu_limit(**cgroup_v1(tmp_path, "/docker/abc", quota, period)) is None


def test_cgroup_absent() -> None:
    assert cgroup_cpu_limit("/nonexistent", "/nonexistent") is None


def test_this_machines_cgroup_is_readable() -> None:
    limit = cgroup_cpu_limit()
    assert limit is None or limit > 0


# ---------------------------------------------------------------------- the sensor
def test_override_identity_and_formula(
    host: Host, tmp_path: pathlib.Path, no_cgroup: dict[str, str]
) -> None:
    info_path = write_cpuinfo(tmp_path, "Some CPU 1234", sockets=2, vendor="GenuineIntel")
    sensor = CpuTdpSensor.create(100.0, cpuinfo_path=info_path, clock=host.clock, **no_cgroup)
    assert isinstance(sensor, Sensor)
    (dev,) = sensor.devices
    assert dev.hw_id == "cpu"
    assert dev.hw_type is HwType.CPU
    assert dev.method is Method.TDP_MODEL
    assert not dev.measured
    assert dev.name == "Some CPU 1234"
    assert dev.vendor == "Intel"
    assert (dev.band_low, dev.band_high, dev.band_coverage) == (
        TDP_TABLE_BAND.low,
        TDP_TABLE_BAND.high,
        TDP_TABLE_BAND.coverage,
    )
    assert "cpu_tdp override 100 W x 2 socket(s)" in dev.note
    assert sensor.tdp_w == 200.0
    host.run(2.0, dict.fromkeys(range(4), 1.0))
    assert sensor.read(0).power_w == pytest.approx(200.0)  # every CPU usable and busy
    host.affinity = {0, 1}  # 2 of the 4 logical CPUs: seen at the next affinity check
    host.run(AFFINITY_REFRESH_S, dict.fromkeys(range(4), 1.0))
    assert sensor.read(0).power_w == pytest.approx(200.0)  # the interval before the check
    host.run(2.0, {0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0})  # CPUs 2, 3 are not ours
    r = sensor.read(0)
    assert r.energy_j is None
    assert sensor.last_utilization == pytest.approx(0.75)
    expected = 200.0 * (2 / 4) * (IDLE_FRACTION + (1 - IDLE_FRACTION) * 0.75)
    assert r.power_w == pytest.approx(expected)
    host.run(1.0, {})  # idle
    assert sensor.read(0).power_w == pytest.approx(200.0 * 0.5 * IDLE_FRACTION)
    assert sensor.read(0).power_w == pytest.approx(200.0 * 0.5 * IDLE_FRACTION)  # no time passed
    sensor.close()


def test_table_match(host: Host, tmp_path: pathlib.Path, no_cgroup: dict[str, str]) -> None:
    info_path = write_cpuinfo(tmp_path, "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", sockets=2)
    sensor = CpuTdpSensor(cpuinfo_path=info_path, clock=host.clock, **no_cgroup)
    assert sensor.tdp_w == 300.0
    assert "table match 'Intel Xeon Gold 6248' (exact) 150 W x 2 socket(s)" in sensor.tdp_source
    assert sensor.devices[0].band_coverage == TDP_TABLE_BAND.coverage
    assert sensor.devices[0].vendor == "Intel"  # from the name: no vendor_id line
    host.run(1.0, dict.fromkeys(range(4), 1.0))
    assert sensor.read(0).power_w == pytest.approx(300.0)


def test_unknown_cpu_uses_per_core_default_and_warns(
    host: Host,
    caplog: pytest.LogCaptureFixture,
    no_cgroup: dict[str, str],
    tmp_path: pathlib.Path,
) -> None:
    info_path = write_cpuinfo(tmp_path, None)  # bare metal, no vendor line: the name decides
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.sensors.cpu_model"):
        sensor = CpuTdpSensor(
            cpu_model="AMD EPYC", cpuinfo_path=info_path, clock=host.clock, **no_cgroup
        )
    assert sensor.tdp_w == pytest.approx(DEFAULT_TDP_PER_CORE_W * 2)  # 2 physical cores
    assert sensor.devices[0].uncertainty == UNKNOWN_CPU_UNCERTAINTY
    assert sensor.devices[0].band_low == TDP_DEFAULT_BAND.low
    assert sensor.devices[0].band_coverage == TDP_DEFAULT_BAND.coverage
    assert "unknown CPU 'AMD EPYC'" in sensor.devices[0].note
    assert sensor.devices[0].vendor == "AMD"
    assert len(caplog.records) == 1
    assert "not in the TDP table" in caplog.records[0].getMessage()


def test_no_model_string_at_all(
    host: Host, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, no_cgroup: dict[str, str]
) -> None:
    monkeypatch.setattr(cpu_model.platform, "processor", lambda: "")
    sensor = CpuTdpSensor(cpuinfo_path=write_cpuinfo(tmp_path, None), **no_cgroup)
    assert sensor.cpu_model == "unknown CPU"
    assert sensor.devices[0].vendor == "unknown"
    assert sensor.tdp_w == pytest.approx(DEFAULT_TDP_PER_CORE_W * 2)


def test_cgroup_quota_caps_cores_and_drives_utilisation(host: Host, tmp_path: pathlib.Path) -> None:
    paths = cgroup_v2(tmp_path, "/ctr", {"ctr": "100000 100000"})  # 1 CPU
    stat = pathlib.Path(paths["cgroup_root"]) / "ctr" / "cpu.stat"
    stat.write_text("usage_usec 1000000\nuser_usec 1\n")
    sensor = CpuTdpSensor(cpu_tdp=80.0, cpu_model="X 1", clock=host.clock, **paths)
    assert sensor.cgroup_limit == 1.0
    assert "1 of 4 logical CPUs usable (affinity 4, cgroup quota 1 CPU)" in sensor.devices[0].note
    host.run(2.0, dict.fromkeys(range(4), 1.0))  # the host is busy, our cgroup is not: per-CPU
    stat.write_text("usage_usec 2000000\n")  # +1 s of CPU in 2 s with 1 CPU allowed: u = 0.5
    r = sensor.read(0)
    assert sensor.last_utilization == pytest.approx(0.5)
    assert r.power_w == pytest.approx(80.0 * (1 / 4) * (IDLE_FRACTION + (1 - IDLE_FRACTION) * 0.5))


def test_cgroup_v1_usage_drives_utilisation(host: Host, tmp_path: pathlib.Path) -> None:
    paths = cgroup_v1(tmp_path, "/docker/abc", "200000")  # 2 CPUs of 4
    usage = pathlib.Path(paths["cgroup_root"]) / "cpu,cpuacct" / "docker" / "abc" / "cpuacct.usage"
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **paths)
    host.run(1.0, {})
    usage.write_text(f"{int(2e9)}\n")  # 2 CPU-seconds in 1 s on 2 CPUs: fully busy
    sensor.read(0)
    assert sensor.last_utilization == pytest.approx(1.0)


def test_unreadable_cgroup_usage_falls_back_to_per_cpu_times(
    host: Host, tmp_path: pathlib.Path
) -> None:
    paths = cgroup_v2(tmp_path, "/ctr", {"ctr": "200000 100000"})
    (pathlib.Path(paths["cgroup_root"]) / "ctr" / "cpu.stat").write_text("nr_periods 1\n")
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **paths)
    host.run(1.0, {0: 1.0, 1: 1.0})
    sensor.read(0)
    assert sensor.last_utilization == pytest.approx(0.5)  # 2 of the 4 affinity CPUs busy


def test_cpu_times_failure_is_sensor_error(host: Host, no_cgroup: dict[str, str]) -> None:
    sensor = CpuTdpSensor(cpu_tdp=10.0, cpu_model="X 1", clock=host.clock, **no_cgroup)
    host.fail = True
    with pytest.raises(SensorError, match="CPU times"):
        sensor.read(0)
    with pytest.raises(IndexError):
        sensor.read(1)


def test_without_sched_getaffinity_all_cpus_count(
    host: Host, monkeypatch: pytest.MonkeyPatch, no_cgroup: dict[str, str]
) -> None:
    monkeypatch.delattr(cpu_model.os, "sched_getaffinity")
    monkeypatch.setattr(cpu_model.os, "cpu_count", lambda: 4)
    sensor = CpuTdpSensor(cpu_tdp=10.0, cpu_model="X 1", clock=host.clock, **no_cgroup)
    host.run(1.0, dict.fromkeys(range(4), 1.0))
    assert sensor.read(0).power_w == pytest.approx(10.0)


def test_real_machine_reading_is_plausible() -> None:
    sensor = CpuTdpSensor.create()
    sum(i * i for i in range(200_000))
    r = sensor.read(0)
    assert 0.0 < r.power_w <= sensor.tdp_w
    assert r.energy_j is None
    assert sensor.last_utilization is not None


def test_model_doc_states_formula_and_constants() -> None:
    assert "P_host = W_core x usable threads / threads per core" in TDP_MODEL_DOC
    assert "P_job  = P_host x this process tree's CPU time / busy CPU time" in TDP_MODEL_DOC
    assert str(IDLE_FRACTION) in TDP_MODEL_DOC
    assert str(DEFAULT_TDP_PER_CORE_W) in TDP_MODEL_DOC
    assert "Boavizta" in TDP_MODEL_DOC
    assert "CodeCarbon" in TDP_MODEL_DOC


def test_cgroup_usage_vanishing_mid_run_falls_back(host: Host, tmp_path: pathlib.Path) -> None:
    paths = cgroup_v2(tmp_path, "/ctr", {"ctr": "100000 100000"})
    stat = pathlib.Path(paths["cgroup_root"]) / "ctr" / "cpu.stat"
    stat.write_text("usage_usec 0\n")
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **paths)
    stat.unlink()  # the container's cgroup went away
    host.run(1.0, {0: 1.0})
    sensor.read(0)
    assert sensor.last_utilization == pytest.approx(0.25)  # per-CPU times of the 4 CPUs


def test_cgroup_v1_usage_garbage_mid_run_falls_back(host: Host, tmp_path: pathlib.Path) -> None:
    paths = cgroup_v1(tmp_path, "/docker/abc", "100000")
    usage = pathlib.Path(paths["cgroup_root"]) / "cpu,cpuacct" / "docker" / "abc" / "cpuacct.usage"
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **paths)
    usage.write_text("garbage\n")
    host.run(1.0, {0: 1.0, 1: 1.0})
    sensor.read(0)
    assert sensor.last_utilization == pytest.approx(0.5)


# ---------------------------------------------------------------------- threads, cores, VMs
@pytest.mark.parametrize(
    ("logical", "physical", "virtual", "vendor", "expected"),
    [
        (64, 32, False, "AMD", 2.0),  # bare metal SMT
        (8, 8, False, "Intel", 1.0),  # bare metal, SMT off
        (2, 2, True, "Intel", 2.0),  # VM shown 1 thread per core: vCPUs are hyperthreads
        (4, 2, True, "AMD", 2.0),  # VM that shows its SMT
        (4, 4, True, "ARM", 1.0),  # Graviton-like: no SMT
    ],
)
def test_threads_per_core(
    logical: int, physical: int, virtual: bool, vendor: str, expected: float
) -> None:
    assert cpu_model.threads_per_core(logical, physical, virtual=virtual, vendor=vendor) == expected


def test_vm_counts_vcpus_as_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, no_cgroup: dict[str, str]
) -> None:
    host = Host(monkeypatch, logical=2, physical=2)  # what this 2-vCPU CI VM reports
    info_path = write_cpuinfo(
        tmp_path, "Intel(R) Xeon(R) Processor", vendor="GenuineIntel", vm=True
    )
    sensor = CpuTdpSensor(cpuinfo_path=info_path, clock=host.clock, **no_cgroup)
    assert sensor.virtual and sensor.threads_per_core == 2.0
    assert sensor.tdp_w == pytest.approx(DEFAULT_TDP_PER_CORE_W * 1)  # 2 vCPUs = 1 core, not 2
    assert "1 core(s) (2 thread(s) / 2 per core" in sensor.tdp_source


def test_vm_with_table_part_uses_per_core_default(
    host: Host, tmp_path: pathlib.Path, no_cgroup: dict[str, str]
) -> None:
    # a 4-vCPU guest of a 20-core 150 W package: charging the package TDP would be 150 W
    info_path = write_cpuinfo(tmp_path, "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", vm=True)
    sensor = CpuTdpSensor(cpuinfo_path=info_path, clock=host.clock, **no_cgroup)
    assert sensor.tdp_w == pytest.approx(DEFAULT_TDP_PER_CORE_W * 2)  # 4 threads / 2 per core
    assert "virtual machine: 'Intel Xeon Gold 6248' is in the table" in sensor.tdp_source
    assert sensor.devices[0].band_low == TDP_DEFAULT_BAND.low


# ---------------------------------------------------------------------- job scope
def test_job_share_follows_process_tree_cpu_time(
    host: Host, tmp_path: pathlib.Path, no_cgroup: dict[str, str]
) -> None:
    info_path = write_cpuinfo(tmp_path, "Some CPU 1234")
    tree = FakeTree([10.0, 12.0, 13.0, 13.0])  # our CPU seconds at each read
    sensor = CpuTdpSensor.create(
        100.0, cpuinfo_path=info_path, clock=host.clock, tree=tree, **no_cgroup
    )
    host.run(1.0, {0: 1.0})
    first = sensor.read(0)  # baseline of the job meter: all of it is ours
    assert first.scope is not None and first.scope.share == 1.0
    host.run(2.0, dict.fromkeys(range(4), 1.0))  # 8 busy CPU seconds, 2 of them ours
    r = sensor.read(0)
    assert r.power_w == pytest.approx(100.0)  # host scope: every process on the CPUs
    assert r.scope is not None
    assert r.scope.share == pytest.approx(0.25)
    assert (r.scope.job_cpu_s, r.scope.busy_cpu_s) == (pytest.approx(2.0), pytest.approx(8.0))
    assert r.scope.shared is True  # 75 % of the busy time was other processes
    host.run(1.0, {1: 1.0})  # 1 busy second, all ours
    r = sensor.read(0)
    assert r.scope is not None and r.scope.share == pytest.approx(1.0) and r.scope.shared is False
    host.run(1.0, {})  # nobody busy: split by the run's share so far (3 of 9 s)
    r = sensor.read(0)
    assert r.scope is not None and r.scope.share == pytest.approx(3.0 / 9.0)
    assert r.power_w == pytest.approx(100.0 * IDLE_FRACTION)


def test_job_share_failure_keeps_host_reading(
    host: Host, tmp_path: pathlib.Path, no_cgroup: dict[str, str]
) -> None:
    info_path = write_cpuinfo(tmp_path, "Some CPU 1234")
    sensor = CpuTdpSensor.create(
        100.0, cpuinfo_path=info_path, clock=host.clock, tree=FakeTree([]), **no_cgroup
    )
    host.run(1.0, {0: 1.0})
    r = sensor.read(0)  # the fake tree is exhausted: StopIteration inside the meter
    assert r.scope is None
    assert r.power_w > 0


def test_proc_stat_reader_agrees_with_psutil_on_this_machine() -> None:
    """Would catch: the direct /proc/stat parser counting busy or total time differently from
    psutil's fields (what the model was built on)."""
    import psutil

    if not pathlib.Path(cpu_model.PROC_STAT).exists():
        pytest.skip("no /proc/stat")
    ours = cpu_model.read_percpu_times()
    theirs = {i: cpu_model._busy_total(t) for i, t in enumerate(psutil.cpu_times(percpu=True))}
    assert set(ours) == set(theirs)
    for cpu, (busy, total) in ours.items():
        assert busy == pytest.approx(theirs[cpu][0], abs=1.0)  # read a moment apart
        assert total == pytest.approx(theirs[cpu][1], abs=1.0)


def test_proc_stat_kept_open_reads_every_cpu_line_of_a_long_file(tmp_path: pathlib.Path) -> None:
    """Would catch: a host with many CPUs losing the cpu lines past the first read's size, a
    line cut at the end of a read parsed as a (wrong) number, or a stale first read returned
    after the file changed."""
    path = tmp_path / "stat"

    def write(busy: int) -> None:
        lines = ["cpu  1 1 1 1 1 1 1 1 0 0"]
        lines += [f"cpu{i} {busy} 0 {i} 500 10 0 0 0 0 0" for i in range(600)]
        lines.append("intr " + " ".join(["7"] * 3000))
        path.write_text("\n".join(lines) + "\nctxt 1\n")

    write(100)
    assert path.stat().st_size > 4096 * 4
    stat = cpu_model.ProcStat(str(path))
    times = stat.percpu()
    assert times is not None and sorted(times) == list(range(600))
    assert times[599] == pytest.approx(((100 + 599) / 100.0, (100 + 599 + 510) / 100.0))
    write(300)
    again = stat.percpu()
    assert again is not None and again[599][0] == pytest.approx((300 + 599) / 100.0)
    stat.close()
    short = tmp_path / "short"
    short.write_text("cpu  1 0 0 1\ncpu0 200 0 0 800 0 0 0 0 0 0\n")  # no line after: whole file
    assert cpu_model.read_percpu_times(cpu_model.ProcStat(str(short))) == {0: (2.0, 10.0)}


def test_sensor_keeps_proc_stat_open_and_close_releases_it(
    no_cgroup: dict[str, str], tmp_path: pathlib.Path
) -> None:
    """Would catch: /proc/stat opened and closed on every tick (three system calls more a tick),
    or left open once the sensor is closed."""
    if not pathlib.Path(cpu_model.PROC_STAT).exists():
        pytest.skip("no /proc/stat")
    fd_dir = pathlib.Path("/proc/self/fd")
    before = len(list(fd_dir.iterdir()))
    sensor = CpuTdpSensor.create(100.0, cpuinfo_path=write_cpuinfo(tmp_path, "X"), **no_cgroup)
    for _ in range(5):
        assert sensor.read(0).power_w > 0
    assert len(list(fd_dir.iterdir())) == before + 1
    sensor.close()
    assert len(list(fd_dir.iterdir())) == before


def test_every_cpu_usable_reads_the_first_line_only_and_agrees_with_the_cpu_lines(
    host: Host, monkeypatch: pytest.MonkeyPatch, no_cgroup: dict[str, str]
) -> None:
    """Would catch: the per-CPU lines read and parsed on every tick while the first line (all
    CPUs together) gives the same figure with one line; or that line counted differently."""
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **no_cgroup)
    calls = {"cpu_lines": 0, "first_line": 0}
    for name in calls:
        real = getattr(cpu_model.ProcStat, name)

        def counted(stat: cpu_model.ProcStat, _real=real, _name=name) -> bytes | None:  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(stat)  # type: ignore[no-any-return]

        monkeypatch.setattr(cpu_model.ProcStat, name, counted)
    for busy in ({0: 1.0}, {0: 0.5, 3: 0.25}, {}):
        host.run(1.0, busy)
        sensor.read(0)
        assert sensor.last_utilization == pytest.approx(sum(busy.values()) / 4)
    assert calls == {"cpu_lines": 0, "first_line": 3}


def test_usable_cpus_are_looked_at_every_refresh_period_not_every_read(
    host: Host, monkeypatch: pytest.MonkeyPatch, no_cgroup: dict[str, str]
) -> None:
    """Would catch: a system call (sched_getaffinity) on every tick for a fact that changes
    once in a job's life, if ever."""
    seen: list[float] = []
    monkeypatch.setattr(
        cpu_model.os, "sched_getaffinity", lambda pid: seen.append(host.t) or set(host.affinity)
    )
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **no_cgroup)
    at_start = len(seen)
    for _ in range(25):
        host.run(1.0, {})
        sensor.read(0)
    assert seen[at_start:] == [10.0, 20.0]


def test_an_affinity_change_loses_no_interval_and_counts_none_twice(
    host: Host, no_cgroup: dict[str, str]
) -> None:
    """Would catch: the switch between the first line (every CPU usable) and the per-CPU lines
    (some usable) dropping the busy time of the interval around the change, or counting it
    twice: the busy CPU seconds summed over the reads equal those of the CPUs usable in each
    interval, whatever the changes."""
    sensor = CpuTdpSensor(
        cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, tree=FakeTree([0.0] * 100), **no_cgroup
    )
    all_busy = dict.fromkeys(range(4), 1.0)
    busy_seen = 0.0
    expected = 0.0
    usable = 4  # CPUs counted in the interval that ends at the next read
    for step in range(40):
        if step == 12:
            host.affinity = {0, 1}  # seen at t = 20 s: from the next interval on
        if step == 27:
            host.affinity = {0, 1, 2, 3}  # seen at t = 30 s
        host.run(1.0, all_busy)
        r = sensor.read(0)
        assert r.scope is not None
        busy_seen += r.scope.busy_cpu_s
        expected += usable if step > 0 else 0.0  # the first read is the job meter's baseline
        if host.t in (20.0, 30.0):
            usable = len(host.affinity)
    assert busy_seen == pytest.approx(expected)
    assert expected == 4 * 20 + 2 * 10 + 4 * 9  # t 1..20 all, 21..30 two, 31..40 all (1st: base)


def test_read_raw_then_decode_later_gives_the_same_readings_as_read(
    host: Host, no_cgroup: dict[str, str]
) -> None:
    """Would catch: state shared between the reading side (read_raw, at the tick) and the
    decoding side (decode, when the sampler commits: later, maybe on another thread), which
    makes a reading depend on when it is decoded."""
    direct = CpuTdpSensor(
        cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, tree=FakeTree(range(100)), **no_cgroup
    )
    split = CpuTdpSensor(
        cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, tree=FakeTree(range(100)), **no_cgroup
    )
    expected, raws = [], []
    for step in range(30):
        if step == 8:
            host.affinity = {1, 2}
        host.run(1.0, {step % 4: 1.0, 1: 0.5})
        expected.append(direct.read(0))
        raws.append(split.read_raw(0))
    got = [split.decode(0, raw) for raw in raws]
    assert [r.power_w for r in got] == [r.power_w for r in expected]
    assert [r.scope for r in got] == [r.scope for r in expected]


def test_a_garbled_proc_stat_is_an_error_and_the_next_reading_spans_the_gap(
    host: Host, no_cgroup: dict[str, str]
) -> None:
    """Would catch: an unreadable first line taken as 'no change' (the last utilisation filled
    in and labelled a reading), or the interval it covered lost."""
    sensor = CpuTdpSensor(cpu_tdp=40.0, cpu_model="X 1", clock=host.clock, **no_cgroup)
    host.run(1.0, {0: 1.0})
    raw = sensor.read_raw(0)
    with pytest.raises(SensorError, match="no usable cpu line"):
        sensor.decode(0, (raw[0], b"intr 1 2 3", *raw[2:]))
    host.run(1.0, {1: 1.0, 2: 1.0})
    sensor.read(0)  # the two seconds since the last good reading: 3 busy CPU-seconds of 8
    assert sensor.last_utilization == pytest.approx(3 / 8)
