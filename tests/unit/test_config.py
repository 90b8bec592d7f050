from __future__ import annotations

from pathlib import Path

import pytest

from hf_eco2ai.config import CarbonConfig, ConfigError, env_var_name, field_docs, field_names


def test_defaults() -> None:
    cfg = CarbonConfig()
    assert cfg.sample_interval == 1.0
    assert cfg.pue == 1.0
    assert cfg.country is None
    assert cfg.step_span_every == 0
    assert cfg.track_gpu and cfg.track_cpu and cfg.track_ram
    assert cfg.history_size == 3600
    assert cfg.output_dir is None  # the framework's own output location, see output_location
    assert all(cfg.sources[name] == "default" for name in field_names())


def test_frozen() -> None:
    cfg = CarbonConfig()
    with pytest.raises(AttributeError):
        cfg.pue = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sample_interval", 0.01),
        ("sample_interval", 61),
        ("sample_interval", "1"),
        ("sample_interval", float("nan")),
        ("sample_interval", True),
        ("pue", 0.9),
        ("pue", 3.5),
        ("pue", None),
        ("country", "XX"),
        ("country", "France"),
        ("country", 33),
        ("region", ""),
        ("region", 5),
        ("carbon_intensity", -1),
        ("carbon_intensity", 2001),
        ("carbon_intensity", float("inf")),
        ("carbon_table", "ember"),
        ("carbon_provider", "watttime"),
        ("carbon_refresh_interval", 10),
        ("cloud_metadata", "yes"),
        ("gpu_devices", "cuda:0"),
        ("gpu_devices", [-1]),
        ("gpu_devices", ["0", "0"]),
        ("gpu_devices", []),
        ("gpu_devices", [True]),
        ("gpu_devices", 1.5),
        ("gpu_devices", [None]),
        ("track_gpu", 1),
        ("track_cpu", "false"),
        ("track_ram", None),
        ("cpu_tdp", 0),
        ("cpu_tdp", 5000),
        ("ram_power_per_gb", -0.1),
        ("ram_power_per_gb", 11),
        ("output_dir", ""),
        ("output_dir", b"runs"),
        ("output_dir", "~no-such-user-hf-eco2ai/runs"),
        ("step_span_every", -1),
        ("step_span_every", 1.5),
        ("history_size", 5),
        ("history_size", 10**8),
        ("project_name", "  "),
        ("experiment_description", 3),
    ],
)
def test_bad_values_name_field_env_value_and_allowed(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        CarbonConfig(**{field: value})  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field_name == field
    message = str(err)
    assert f"'{field}'" in message
    assert env_var_name(field) in message
    assert repr(value) in message
    assert "allowed:" in message and err.allowed


def test_valid_normalisation() -> None:
    cfg = CarbonConfig(
        country=" fra ",
        gpu_devices=[0, "GPU-abcd", " 1 "],
        carbon_table=" BUILTIN ",
        step_span_every=10.0,  # type: ignore[arg-type]
        pue=2,
    )
    assert cfg.country == "FR"
    assert cfg.gpu_devices == ("0", "GPU-abcd", "1")
    assert cfg.carbon_table == "builtin"
    assert cfg.step_span_every == 10
    assert isinstance(cfg.pue, float)
    assert CarbonConfig(gpu_devices=3).gpu_devices == ("3",)
    assert CarbonConfig(gpu_devices="MIG-1234").gpu_devices == ("MIG-1234",)


def test_from_env_parses_every_kind_and_records_sources() -> None:
    env = {
        "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL": "0.5",
        "OTEL_PYTHON_HF_ECO2AI_PUE": " 1.2 ",
        "OTEL_PYTHON_HF_ECO2AI_COUNTRY": "de",
        "OTEL_PYTHON_HF_ECO2AI_TRACK_GPU": "off",
        "OTEL_PYTHON_HF_ECO2AI_TRACK_RAM": "YES",
        "OTEL_PYTHON_HF_ECO2AI_GPU_DEVICES": "0,GPU-1234",
        "OTEL_PYTHON_HF_ECO2AI_STEP_SPAN_EVERY": "50",
        "OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY": "",
        "OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR": "/tmp/runs",
        "UNRELATED": "x",
    }
    cfg = CarbonConfig.from_env(env)
    assert cfg.sample_interval == 0.5
    assert cfg.pue == 1.2
    assert cfg.country == "DE"
    assert cfg.track_gpu is False
    assert cfg.track_ram is True
    assert cfg.gpu_devices == ("0", "GPU-1234")
    assert cfg.step_span_every == 50
    assert cfg.carbon_intensity is None
    assert cfg.output_dir == "/tmp/runs"
    assert cfg.sources["pue"] == "env OTEL_PYTHON_HF_ECO2AI_PUE"
    assert cfg.sources["history_size"] == "default"


def test_from_env_overrides_win_and_are_recorded() -> None:
    env = {"OTEL_PYTHON_HF_ECO2AI_PUE": "1.5"}
    cfg = CarbonConfig.from_env(env, pue=1.1)
    assert cfg.pue == 1.1
    assert cfg.sources["pue"] == "argument"


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_HISTORY_SIZE", "100")
    assert CarbonConfig.from_env().history_size == 100


@pytest.mark.parametrize(
    ("var", "raw", "allowed"),
    [
        ("PUE", "high", "a number"),
        ("HISTORY_SIZE", "1e3", "an integer"),
        ("TRACK_CPU", "maybe", "true or false"),
        ("PUE", "9", "between 1 and 3"),
        ("COUNTRY", "Narnia", "ISO 3166"),
    ],
)
def test_from_env_bad_values(var: str, raw: str, allowed: str) -> None:
    with pytest.raises(ConfigError, match=f"OTEL_PYTHON_HF_ECO2AI_{var}") as info:
        CarbonConfig.from_env({f"OTEL_PYTHON_HF_ECO2AI_{var}": raw})
    assert allowed in str(info.value)


def test_unknown_keyword_is_refused() -> None:
    with pytest.raises(ConfigError, match="'sample_intervall'") as info:
        CarbonConfig.from_env({}, sample_intervall=2)
    assert "sample_interval" in info.value.allowed
    with pytest.raises(ConfigError, match="'colour'"):
        CarbonConfig().replace(colour="red")
    with pytest.raises(TypeError):
        CarbonConfig(colour="red")  # type: ignore[call-arg]


def test_replace_validates_and_tracks_sources() -> None:
    cfg = CarbonConfig().replace(pue=1.3)
    assert cfg.pue == 1.3
    assert cfg.sources["pue"] == "argument"
    with pytest.raises(ConfigError):
        CarbonConfig().replace(pue=7)


def test_as_dict_and_docs_cover_every_field() -> None:
    cfg = CarbonConfig(country="PL")
    data = cfg.as_dict()
    assert set(data) == set(field_names())
    assert data["country"] == "PL"
    docs = field_docs()
    assert [row[0] for row in docs] == list(field_names())
    for name, env, _default, allowed, help_text in docs:
        assert env == env_var_name(name)
        assert allowed and help_text


def test_environment_variables_module_lists_every_field() -> None:
    from hf_eco2ai import environment_variables

    names = {v for k, v in vars(environment_variables).items() if k.startswith("OTEL_")}
    assert names == {env_var_name(f) for f in field_names()}


def test_eco2ai_table_without_eco2ai_fails_at_configuration_time() -> None:
    import importlib.util

    if importlib.util.find_spec("eco2ai") is not None:
        pytest.skip("eco2ai is installed here")
    with pytest.raises(ConfigError, match="OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE") as info:
        CarbonConfig.from_env({"OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE": "eco2ai"})
    assert "hf-eco2ai[eco2ai]" in str(info.value)


def test_misspelt_env_variable_is_named_with_the_closest_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Would catch: a typo in a variable name ignored in silence (the run then measures with a
    setting the user believes changed), a warning per call instead of once, or a warning for
    the variables we do read (settings and the MLflow bridge's timeout)."""
    import logging

    caplog.set_level(logging.WARNING, logger="hf_eco2ai.config")
    env = {
        "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVL": "0.5",
        "OTEL_PYTHON_HF_ECO2AI_COUNTRY": "FR",
        "OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT": "3",
        "OTEL_PYTHON_HF_ECO2AI_XYZ": "1",
        "OTEL_SERVICE_NAME": "svc",
    }
    config = CarbonConfig.from_env(env)
    CarbonConfig.from_env(env)
    assert config.sample_interval == CarbonConfig().sample_interval  # the typo changes nothing
    assert config.country == "FR"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2, messages
    typo = next(m for m in messages if "SAMPLE_INTERVL" in m)
    assert "did you mean OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL?" in typo
    other = next(m for m in messages if "_XYZ" in m)
    assert "did you mean" not in other
    assert "is ignored" in other


# ------------------------------------------------------------------ the one field table
def test_every_field_is_declared_once_with_kind_help_and_default() -> None:
    """Would catch: a field added to the dataclass without a kind (unvalidated, undocumented,
    no environment variable), or a table that drifts from the dataclass."""
    import dataclasses

    from hf_eco2ai.config import field_specs

    declared = [f.name for f in dataclasses.fields(CarbonConfig) if f.name != "sources"]
    specs = field_specs()
    assert [s.name for s in specs] == declared == list(field_names())
    for spec in specs:
        assert spec.help.strip() and spec.kind.allowed()
        assert spec.env_var == env_var_name(spec.name)
        assert getattr(CarbonConfig(), spec.name) == spec.default


def test_numeric_bounds_live_in_the_kind_and_are_what_errors_and_docs_say() -> None:
    """The bounds are written once (the field's kind): the values just inside are accepted, just
    outside refused, and the error and the docs quote the same allowed text. Would catch bounds
    checked in one place and described in another."""
    import math

    from hf_eco2ai.config import field_specs
    from hf_eco2ai.config_fields import Number

    docs = {row[0]: row[3] for row in field_docs()}
    numbers = [s for s in field_specs() if isinstance(s.kind, Number)]
    assert len(numbers) >= 9
    for spec in numbers:
        kind = spec.kind
        assert isinstance(kind, Number)
        step = 1 if kind.integer else 0
        hi = kind.hi
        CarbonConfig(**{spec.name: int(hi) if kind.integer else hi})
        above = hi + 1 if kind.integer else math.nextafter(hi, math.inf)
        with pytest.raises(ConfigError) as info:
            CarbonConfig(**{spec.name: above})
        assert info.value.allowed == kind.allowed() == docs[spec.name]
        if not kind.lo_open:
            CarbonConfig(**{spec.name: int(kind.lo) if kind.integer else kind.lo})
        below = kind.lo - step if kind.integer else math.nextafter(kind.lo, -math.inf)
        with pytest.raises(ConfigError):
            CarbonConfig(**{spec.name: kind.lo if kind.lo_open else below})


def test_environment_variables_module_is_generated_from_the_table() -> None:
    from hf_eco2ai import environment_variables
    from hf_eco2ai.config import field_specs

    source = environment_variables.__doc__ or ""
    assert "Generated from the ``CarbonConfig`` field table" in source
    for spec in field_specs():
        assert getattr(environment_variables, spec.env_var) == spec.env_var


def _imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level, lazily in a function, or for typing."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_import_circle_between_config_and_carbon() -> None:
    """Would catch: ``carbon/tables.py`` importing ``hf_eco2ai.config`` again for ConfigError
    (at module level or inside a function) while config validates with the carbon tables."""
    import hf_eco2ai

    root = Path(hf_eco2ai.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(("hf_eco2ai", *parts))] = path
    graph = {name: _imports_of(path) & set(modules) for name, path in modules.items()}
    graph["hf_eco2ai"] = set()  # the package's __init__ is the public face, above everything

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return seen

    assert "hf_eco2ai.errors" in graph["hf_eco2ai.carbon.tables"]
    assert graph["hf_eco2ai.errors"] == set()  # a leaf
    assert "hf_eco2ai.config" not in reach("hf_eco2ai.config")
    for name in modules:
        if name.startswith("hf_eco2ai.carbon") and name in reach("hf_eco2ai.config"):
            assert "hf_eco2ai.config" not in reach(name), name


def test_config_error_is_one_class_everywhere() -> None:
    import hf_eco2ai
    from hf_eco2ai import config, errors
    from hf_eco2ai.carbon import tables

    assert hf_eco2ai.ConfigError is config.ConfigError is errors.ConfigError
    with pytest.raises(config.ConfigError):
        tables.ensure_table_available("ember")
