from __future__ import annotations

import json

import pytest

from hf_eco2ai import cli
from hf_eco2ai.config import field_names


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hf-eco2ai 0.")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "doctor" in capsys.readouterr().out


def test_doctor_table_on_this_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_COUNTRY", "FR")
    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_TRACK_GPU", "false")
    assert cli.main(["doctor", "--seconds", "0.6"]) == 0
    out = capsys.readouterr().out
    for heading in ("Sensors", "Why", "Carbon intensity", "Configuration"):
        assert heading in out
    # no RAPL here: the CPU is the TDP model, stated as estimated with its band
    assert "tdp-model" in out or "rapl" in out
    assert "estimated" in out or "measured" in out
    assert "zone FR" in out
    assert "env OTEL_PYTHON_HF_ECO2AI_COUNTRY" in out
    assert "live reading over" in out


def test_doctor_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY", "123")
    assert cli.main(["doctor", "--seconds", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["carbon_intensity"]["value"] == 123.0
    assert report["carbon_intensity"]["resolved_by"] == "config"
    assert set(report["config"]) == set(field_names())
    assert (
        report["config"]["carbon_intensity"]["source"]
        == "env OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY"
    )
    cpu = [d for d in report["devices"] if d["hw.type"] == "cpu"]
    assert cpu, report["notes"]
    assert cpu[0]["energy_j"] > 0
    assert cpu[0]["energy_low_j"] <= cpu[0]["energy_j"] <= cpu[0]["energy_high_j"]
    assert report["seconds"] > 0.3


def test_doctor_bad_config_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_PUE", "7")
    assert cli.main(["doctor"]) == 2
    assert "OTEL_PYTHON_HF_ECO2AI_PUE" in capsys.readouterr().err


def test_doctor_with_nothing_tracked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for flag in ("GPU", "CPU", "RAM"):
        monkeypatch.setenv(f"OTEL_PYTHON_HF_ECO2AI_TRACK_{flag}", "false")
    assert cli.main(["doctor", "--seconds", "0.1"]) == 0
    assert "no device is measured" in capsys.readouterr().out


def test_format_table_aligns() -> None:
    text = cli.format_table(["x", "long header"], [["a", 1], ["bbb", 22]])
    lines = text.splitlines()
    assert lines[0] == "x    long header"
    assert lines[1] == "---  -----------"
    assert lines[3] == "bbb  22"


def test_doctor_says_in_one_line_when_other_processes_use_the_host() -> None:
    """Would catch: ``doctor`` silent about a host busy with other work (its job share would
    then read as the machine's)."""
    import os
    import signal
    import subprocess
    import sys

    from hf_eco2ai import CarbonConfig

    spin = "import time\nt = time.time()\nwhile time.time() - t < 20: pass"
    # started through a shell that exits at once: the spinner is no descendant of this process
    out = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{spin}" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout.split()[0])
    try:
        report = cli.doctor_report(CarbonConfig(track_gpu=False), 1.5)
    finally:
        os.kill(pid, signal.SIGKILL)
    note = report["host_shared"]
    assert note is not None and note.startswith("host was shared: ")
