"""The RAM model: W/GB x resident memory of this process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from hf_eco2ai.sensors import ram_model
from hf_eco2ai.sensors.bands import RAM_MODEL_BAND
from hf_eco2ai.sensors.base import HwType, Method, Sensor, SensorError
from hf_eco2ai.sensors.ram_model import GIB, RAM_MODEL_DOC, RamModelSensor


class FakeProc:
    def __init__(self, rss: int, children: list[FakeProc] | None = None, pid: int = 1) -> None:
        self.rss = rss
        self.kids = children or []
        self.pid = pid
        self.gone = False
        self.children_calls = 0
        self.children_error = False

    def memory_info(self) -> SimpleNamespace:
        if self.gone:
            raise psutil.NoSuchProcess(self.pid)
        return SimpleNamespace(rss=self.rss)

    def children(self, recursive: bool = False) -> list[FakeProc]:
        assert recursive
        self.children_calls += 1
        if self.children_error:
            raise psutil.AccessDenied(self.pid)
        return list(self.kids)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def with_fake(sensor: RamModelSensor, proc: FakeProc) -> RamModelSensor:
    sensor.tree.root = proc
    return sensor


@pytest.fixture
def big_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ram_model.MemInfo, "used_bytes", lambda info: 256 * GIB)


def test_identity_and_units() -> None:
    sensor = RamModelSensor(0.375)
    assert isinstance(sensor, Sensor)
    (dev,) = sensor.devices
    assert dev.hw_id == "memory"
    assert dev.hw_type is HwType.MEMORY
    assert dev.method is Method.RAM_MODEL
    assert not dev.measured
    assert (dev.band_low, dev.band_high, dev.band_coverage) == (
        RAM_MODEL_BAND.low,
        RAM_MODEL_BAND.high,
        RAM_MODEL_BAND.coverage,
    )
    assert "0.375 W/GB" in dev.note
    assert f"pid {os.getpid()}" in dev.note
    r = sensor.read(0)
    assert r.energy_j is None
    rss = psutil.Process().memory_info().rss
    assert sensor.last_rss_bytes is not None
    assert r.power_w == pytest.approx(0.375 * sensor.last_rss_bytes / GIB)
    assert sensor.last_rss_bytes == pytest.approx(rss, rel=0.2)
    sensor.close()


def test_power_is_per_gb_times_process_tree_rss(big_host: None) -> None:
    tree = FakeProc(2 * GIB, [FakeProc(GIB, pid=2), FakeProc(GIB // 2, pid=3)])
    sensor = with_fake(RamModelSensor(0.5), tree)
    assert sensor.read(0).power_w == pytest.approx(0.5 * 3.5)
    assert sensor.last_rss_bytes == int(3.5 * GIB)


def test_shared_pages_are_capped_at_host_used_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3 GiB used on the host (16 GiB total, 13 GiB available)
    monkeypatch.setattr(ram_model.MemInfo, "used_bytes", lambda info: 3 * GIB)
    tree = FakeProc(2 * GIB, [FakeProc(2 * GIB, pid=2)])  # 4 GiB of RSS: shared pages twice
    sensor = with_fake(RamModelSensor(1.0), tree)
    assert sensor.read(0).power_w == pytest.approx(3.0)


def test_virtual_memory_failure_does_not_fail_the_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("no /proc/meminfo")

    monkeypatch.setattr(ram_model.MemInfo, "used_bytes", lambda info: broken())
    sensor = with_fake(RamModelSensor(1.0), FakeProc(GIB))
    assert sensor.read(0).power_w == pytest.approx(1.0)


def test_children_list_refreshed_on_interval_and_dead_children_skipped(big_host: None) -> None:
    clock = Clock()
    child = FakeProc(GIB, pid=2)
    tree = FakeProc(GIB, [child])
    sensor = with_fake(RamModelSensor(1.0, children_refresh_s=5.0, clock=clock), tree)
    assert sensor.read(0).power_w == pytest.approx(2.0)
    clock.t = 4.0
    tree.kids.append(FakeProc(GIB, pid=3))  # a new worker, not seen until the refresh
    assert sensor.read(0).power_w == pytest.approx(2.0)
    assert tree.children_calls == 1
    clock.t = 5.0
    assert sensor.read(0).power_w == pytest.approx(3.0)
    assert tree.children_calls == 2
    child.gone = True  # exited between two refreshes
    assert sensor.read(0).power_w == pytest.approx(2.0)
    tree.children_error = True
    clock.t = 10.0
    assert sensor.read(0).power_w == pytest.approx(1.0)


def test_real_child_process_memory_is_counted() -> None:
    code = "x = bytearray(64_000_000); import sys, time; print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        sensor = RamModelSensor(1.0, children_refresh_s=0.0)
        own = psutil.Process().memory_info().rss
        sensor.read(0)
        assert sensor.last_rss_bytes is not None
        assert sensor.last_rss_bytes >= own + 60_000_000
    finally:
        child.kill()
        child.wait()


def test_own_process_gone_is_sensor_error() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sensor = RamModelSensor(1.0, pid=child.pid)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(SensorError, match="cannot read process"):
        sensor.read(0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="power_per_gb"):
        RamModelSensor(-0.1)
    sensor = RamModelSensor(0.0)
    assert "reported as 0" in sensor.devices[0].note
    assert sensor.read(0).power_w == 0.0
    with pytest.raises(IndexError):
        sensor.read(1)


def test_model_doc() -> None:
    assert "P = ram_power_per_gb x resident memory (RSS)" in RAM_MODEL_DOC
    assert "0.375 W/GB" in RAM_MODEL_DOC


def test_read_raw_is_the_system_call_and_decode_the_arithmetic() -> None:
    """Would catch: the RAM model's split reading (statm read at the tick, parsed at commit)
    giving another figure than read(), or a garbled statm line taken for a number."""
    sensor = RamModelSensor(0.5)
    raw = sensor.read_raw(0)
    assert isinstance(raw[0], (bytes, int))
    decoded = sensor.decode(0, raw)
    direct = sensor.read(0)
    assert decoded.power_w == pytest.approx(direct.power_w, rel=0.2)  # RSS read a moment apart
    with pytest.raises(SensorError, match="unreadable"):
        sensor.decode(0, (b"garbage", None))
    with pytest.raises(IndexError):
        sensor.read_raw(1)
    sensor.close()
