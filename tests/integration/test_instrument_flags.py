"""`opentelemetry-instrument --hf_eco2ai_<field> VALUE` sets the field (environment_variables
entry point), and the instrumentor is found through its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hf_eco2ai.config import field_names

BIN = Path(sys.executable).parent


def test_entry_points_registered() -> None:
    inst = {ep.name: ep.value for ep in entry_points(group="opentelemetry_instrumentor")}
    assert inst["hf_eco2ai"] == "hf_eco2ai:HFEco2AIInstrumentor"
    env = {ep.name: ep.value for ep in entry_points(group="opentelemetry_environment_variables")}
    assert env["hf_eco2ai"] == "hf_eco2ai.environment_variables"


@pytest.mark.slow
def test_instrument_help_lists_every_field_flag() -> None:
    out = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name in field_names():
        assert f"--hf_eco2ai_{name}" in out, name


@pytest.mark.slow
def test_flag_reaches_the_config(tmp_path: Path) -> None:
    script = tmp_path / "show.py"
    script.write_text(
        "from hf_eco2ai import CarbonConfig\n"
        "c = CarbonConfig.from_env()\n"
        "print('PUE', c.pue, 'COUNTRY', c.country)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "hf_eco2ai"  # only the flags are under test
    proc = subprocess.run(
        [
            str(BIN / "opentelemetry-instrument"),
            "--hf_eco2ai_pue",
            "1.25",
            "--hf_eco2ai_country",
            "PL",
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PUE 1.25 COUNTRY PL" in proc.stdout
