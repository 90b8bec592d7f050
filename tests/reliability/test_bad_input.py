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
from hf_eco2ai.config import ConfigError, env_var_name, field_names
from hf_eco2ai.telemetry.session import active_session

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


# ----------------------------------------------------------- bytes that are not UTF-8 (§4)
UNDECODABLE = "caf\udce9"  # b"caf\xe9" (Latin-1) as os.environ holds it (surrogateescape)


def test_text_settings_with_invalid_utf8_are_replaced_visibly_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Would catch: undecodable bytes in the project name or description accepted as lone
    surrogates, so that every emissions.csv row is lost at the end (UnicodeEncodeError) and
    report.json holds text strict JSON parsers refuse; or a replacement made in silence."""
    import json
    import logging

    caplog.set_level(logging.WARNING, logger="hf_eco2ai.config")
    env = {
        env_var_name("project_name"): UNDECODABLE,
        env_var_name("experiment_description"): "r\udcc3\udca9sum\udcff",
    }
    config = CarbonConfig.from_env(env)
    CarbonConfig.from_env(env)  # once per variable, not per config
    assert config.project_name == "caf\ufffd"
    assert config.experiment_description == "r\ufffd\ufffdsum\ufffd"
    text = json.dumps(config.as_dict(), ensure_ascii=False)
    text.encode("utf-8")  # strict: what the report and CSV writers need
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    for name in ("project_name", "experiment_description"):
        message = next(m for m in warnings if f"'{name}'" in m)
        assert env_var_name(name) in message and "not valid UTF-8" in message
        assert "U+FFFD" in message


@pytest.mark.parametrize("name", field_names())
def test_no_setting_accepts_text_that_cannot_be_written_as_utf8(name: str) -> None:
    """Whatever a variable holds, a value accepted at start encodes as UTF-8 (so it cannot make
    a report fail at the end), or it is refused with the usual ConfigError. Would catch a
    string setting added later without the check."""
    for raw in (UNDECODABLE, "GPU-\udce9", "0,\udcff", "\ud800", "runs/\udce9"):
        try:
            config = CarbonConfig.from_env({env_var_name(name): raw})
        except ConfigError as err:
            _check_message(err, name)
            continue
        value = getattr(config, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, str):
                item.encode("utf-8")


def test_output_dir_with_invalid_utf8_is_refused_at_start() -> None:
    """A path is not text to be repaired: U+FFFD would name another directory. Would catch such
    a path accepted, then written into report.json as lone surrogates."""
    with pytest.raises(ConfigError, match="OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR") as info:
        CarbonConfig.from_env({env_var_name("output_dir"): "/tmp/" + UNDECODABLE})
    assert "UTF-8" in info.value.allowed


@pytest.mark.slow
def test_invalid_utf8_bytes_in_the_real_environment(tmp_path: Path) -> None:
    """The same with real bytes in a child's environment (os.environb), as a shell sets them."""
    program = (
        "from hf_eco2ai import CarbonConfig\n"
        "c = CarbonConfig.from_env()\n"
        "c.project_name.encode('utf-8')\n"
        "print(ascii(c.project_name))\n"
    )
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"OTEL_")}
    env[b"OTEL_PYTHON_HF_ECO2AI_PROJECT_NAME"] = b"caf\xe9"
    env[b"PYTHONPATH"] = os.pathsep.join(sys.path).encode()
    proc = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "'caf\\ufffd'"
    assert "OTEL_PYTHON_HF_ECO2AI_PROJECT_NAME" in proc.stderr
    assert proc.stderr.count("not valid UTF-8") == 1


# ----------------------------------------------------------- output_dir checked at start (§5)
def _output_dir_error(value: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        CarbonConfig.from_env({env_var_name("output_dir"): value})
    _check_message(info.value, "output_dir")
    return info.value


def test_output_dir_that_is_a_regular_file_is_refused_at_start(tmp_path: Path) -> None:
    """Would catch: a file given as output directory, or a path through a file, accepted at
    start and failing only when the report is written at the end (the report lost)."""
    plain = tmp_path / "notes.txt"
    plain.write_text("x")
    assert "not a directory" in _output_dir_error(str(plain)).allowed
    assert "not a directory" in _output_dir_error(str(plain / "runs")).allowed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_output_dir_too_long_for_the_file_system_is_refused_at_start(tmp_path: Path) -> None:
    """Would catch: a component over NAME_MAX (255 bytes) or a path over PATH_MAX (4096)
    accepted at start (ENAMETOOLONG at the end)."""
    err = _output_dir_error(str(tmp_path / ("x" * 256) / "runs"))
    assert "at most 255 bytes" in err.allowed
    err = _output_dir_error(str(tmp_path.joinpath(*["d" * 200] * 21)))
    assert "PATH_MAX" in err.allowed
    # multi-byte names count in bytes: 128 × 'é' is 256 bytes
    assert "255 bytes" in _output_dir_error(str(tmp_path / ("é" * 128))).allowed
    CarbonConfig(output_dir=str(tmp_path / ("x" * 255)))  # the longest name is fine
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_dir_that_cannot_be_created_is_refused_at_start() -> None:
    """A real create/remove probe, so that it holds for root too (who passes every permission
    check): nothing can be created under /proc. Would catch a check by permission bits only."""
    err = _output_dir_error("/proc/hf-eco2ai-test/runs")
    assert "writable" in err.allowed and "'/proc'" in err.allowed


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_output_dir_in_a_read_only_directory_is_refused_at_start(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        err = _output_dir_error(str(locked / "runs"))
    finally:
        locked.chmod(0o700)
    assert "writable" in err.allowed
    assert list(locked.iterdir()) == []


def test_output_dir_is_expanded_and_made_absolute_once_without_creating_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Would catch: '~' kept literally (reports in a './~' directory), a relative path resolved
    late (after an os.chdir, power.png and report.json in different places), or the probe
    leaving a file or directory behind."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    config = CarbonConfig.from_env({env_var_name("output_dir"): "~/deep/runs"})
    assert config.output_dir == str(home / "deep" / "runs")
    relative = CarbonConfig(output_dir="runs/../reports")
    monkeypatch.chdir(home)
    assert relative.output_dir == str(tmp_path / "reports")
    assert relative.replace(pue=1.1).output_dir == str(tmp_path / "reports")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["home"]


def test_output_dir_is_only_probed_when_reports_are_written(tmp_path: Path) -> None:
    """With write_report=false the directory is never used: a bad one does not stop the job
    from being measured (a syntactically impossible one still does)."""
    plain = tmp_path / "file"
    plain.write_text("")
    config = CarbonConfig(output_dir=str(plain), write_report=False)
    assert config.output_dir == str(plain)
    with pytest.raises(ConfigError, match="'output_dir'"):
        config.replace(write_report=True)
    with pytest.raises(ConfigError, match="255 bytes"):
        CarbonConfig(output_dir=str(tmp_path / ("x" * 300)), write_report=False)
