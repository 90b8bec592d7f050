"""Bad configuration: one clear ``ValueError`` naming the setting, the value and what is allowed,
raised before training starts, also under ``opentelemetry-instrument``.

tests/unit/test_config.py covers a hand-picked bad value per field and the env parsing of each
kind; this module sweeps every field and every environment variable with the same hostile
values, and checks the auto-instrumentation path end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import wrapt

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
from hf_eco2ai._state import active_session
from hf_eco2ai.config import ConfigError, env_var_name, field_names

HOSTILE_ENV = [
    "",
    "   ",
    "nan",
    "inf",
    "-inf",
    "-1",
    "1e400",
    "1" + "0" * 400,
    "9" * 5000,
    "0x10",
    "true false",
    "\x00",
    "☃",
    "=cmd|' /C calc'!A0",
    "../../../etc/passwd",
    "GPU-",
]

HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    10**400,
    -(10**400),
    float("nan"),
    float("inf"),
    1e308,
    "",
    "  ",
    "nonsense",
    [],
    ["0", "0"],
    {"a": 1},
    object(),
    b"bytes",
]


def _check_message(err: ConfigError, name: str) -> None:
    message = str(err)
    assert isinstance(err, ValueError)
    assert err.field_name == name
    assert f"'{name}'" in message and env_var_name(name) in message, message
    assert "allowed:" in message and err.allowed, message
    assert repr(err.value) in message


@pytest.mark.parametrize("name", field_names())
def test_every_env_var_refuses_hostile_text_with_one_clear_error(name: str) -> None:
    """Would catch: an env value that raises something else than ConfigError (OverflowError
    for a 400-digit integer, UnicodeError, TypeError…) or an error that does not say which
    variable, which value and what is allowed."""
    var = env_var_name(name)
    for raw in HOSTILE_ENV:
        try:
            config = CarbonConfig.from_env({var: raw})
        except ConfigError as err:
            _check_message(err, name)
        else:  # accepted: then it is a valid value, or "not set" for an empty optional one
            assert getattr(config, name) is not None or raw.strip() == "", (var, raw)


@pytest.mark.parametrize("name", field_names())
def test_every_field_refuses_hostile_python_values_with_one_clear_error(name: str) -> None:
    """Would catch: a wrong type reaching the code (AttributeError, TypeError, OverflowError
    from a huge int) instead of ConfigError at construction."""
    for value in HOSTILE_VALUES:
        try:
            CarbonConfig(**{name: value})
        except ConfigError as err:
            _check_message(err, name)


def test_output_dir_that_cannot_be_a_path_is_refused_at_start() -> None:
    """Would catch: a NUL byte in the output directory accepted, then failing when the report
    is written at the very end of the run (the report lost)."""
    with pytest.raises(ConfigError, match="OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR"):
        CarbonConfig.from_env({"OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR": "runs\x00/x"})


def test_unknown_names_are_refused_everywhere() -> None:
    """Unknown keyword names: ConfigError (from_env/replace) or TypeError (the constructor)."""
    with pytest.raises(ConfigError, match="'pue_'"):
        CarbonConfig.from_env({}, pue_=1.0)
    with pytest.raises(ConfigError, match="'Pue'"):
        CarbonConfig().replace(Pue=1.0)
    from hf_eco2ai import Eco2AICallback

    with pytest.raises(ConfigError, match="'countri'"):
        Eco2AICallback(countri="FR")


def test_bad_env_fails_at_instrument_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Would catch: a bad value discovered mid-run (at the first sample or the report), a
    half-instrumented process left behind (a sampler thread, a patched Trainer), or an error
    that only goes to a logging handler (it must be on stderr too)."""
    import logging
    import threading

    from transformers import Trainer

    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_HISTORY_SIZE", "1" + "0" * 400)
    logging.disable(logging.CRITICAL)  # a logging set-up that shows nothing
    try:
        with pytest.raises(ConfigError, match="OTEL_PYTHON_HF_ECO2AI_HISTORY_SIZE"):
            HFEco2AIInstrumentor().instrument()
    finally:
        logging.disable(logging.NOTSET)
    assert active_session() is None
    assert not isinstance(Trainer.__dict__["train"], wrapt.FunctionWrapper)  # not patched
    assert not any(t.name == "hf-eco2ai-sampler" for t in threading.enumerate())
    err = capfd.readouterr().err
    assert "OTEL_PYTHON_HF_ECO2AI_HISTORY_SIZE" in err
    assert "NOT measuring" in err


@pytest.mark.slow
def test_bad_env_under_opentelemetry_instrument_fails_loudly_at_start(tmp_path: Path) -> None:
    """``opentelemetry-instrument`` catches an instrumentor's exception, logs it and runs the
    program anyway. hf-eco2ai's choice: never kill the user's program over its own settings,
    but say it at start, on stderr, before the program's first line of output, naming the
    variable, the value and what is allowed, and that this process is not measured. Would
    catch: the message missing or late (e.g. at the first sample), or a program that runs
    silently unmeasured (a run report written with the bad value ignored would be worse)."""
    script = Path(sys.executable).parent / "opentelemetry-instrument"
    if not script.exists():
        pytest.skip("opentelemetry-instrument is not installed")
    others = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")} - {"hf_eco2ai"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=",".join(sorted(others)),
        OTEL_PYTHON_HF_ECO2AI_PUE="0.5",
        OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR=str(tmp_path / "runs"),
        PYTHONUNBUFFERED="1",
    )
    program = "print('PROGRAM STARTED', flush=True)"
    proc = subprocess.run(
        [str(script), sys.executable, "-c", program],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream: the order of lines is the order of events
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    assert "PROGRAM STARTED" in out
    message = "hf-eco2ai: invalid value for 'pue' (env OTEL_PYTHON_HF_ECO2AI_PUE): 0.5; allowed:"
    assert message in out, out[-3000:]
    assert out.index(message) < out.index("PROGRAM STARTED")
    assert "between 1 and 3" in out
    assert "hf-eco2ai: NOT measuring this process" in out
    assert not (tmp_path / "runs").exists()
