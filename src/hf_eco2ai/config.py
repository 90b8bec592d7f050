"""`CarbonConfig`: every setting of hf-eco2ai, its default, its env var and its validation.

Each field ``foo`` can be set from the environment as ``OTEL_PYTHON_HF_ECO2AI_FOO`` (and, under
``opentelemetry-instrument``, as ``--hf_eco2ai_foo``). Bad values raise :class:`ConfigError`
(a :class:`ValueError`) naming the field, its env var, the value and what is allowed.

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> CarbonConfig(country="FR", pue=1.2).pue
    1.2
    >>> CarbonConfig.from_env({"OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL": "0.5"}).sample_interval
    0.5
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "OTEL_PYTHON_HF_ECO2AI_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A configuration value is invalid; the message names field, env var, value and what is allowed."""

    def __init__(self, field_name: str, value: object, allowed: str) -> None:
        self.field_name = field_name
        self.value = value
        self.allowed = allowed
        env = env_var_name(field_name)
        super().__init__(
            f"hf-eco2ai: invalid value for '{field_name}' (env {env}): {value!r}; allowed: {allowed}"
        )


def env_var_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``.

    >>> env_var_name("pue")
    'OTEL_PYTHON_HF_ECO2AI_PUE'
    """
    return ENV_PREFIX + field_name.upper()


# --------------------------------------------------------------------------- validators
def _number(
    name: str, value: object, lo: float, hi: float, *, integer: bool = False
) -> float | int:
    kind = "an integer" if integer else "a number"
    allowed = f"{kind} between {lo:g} and {hi:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, value, allowed)
    if integer and not isinstance(value, int):
        if not float(value).is_integer():
            raise ConfigError(name, value, allowed)
        value = int(value)
    # isfinite() of a huge int overflows; ints are finite anyway
    if (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
        raise ConfigError(name, value, allowed)
    return value


def _optional_number(name: str, value: object, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    return float(_number(name, value, lo, hi))


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ConfigError(name, value, "one of " + ", ".join(repr(c) for c in choices))
    return value.strip().lower()


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "true or false")
    return value


def _nonempty_str(name: str, value: object, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, value, "a non-empty string")
    return value.strip()


def _country(name: str, value: object) -> str | None:
    if value is None:
        return None
    from hf_eco2ai.carbon.countries import normalize_country

    allowed = "an ISO 3166-1 alpha-2 or alpha-3 country code, e.g. 'FR' or 'FRA'"
    if not isinstance(value, str):
        raise ConfigError(name, value, allowed)
    try:
        return normalize_country(value)
    except KeyError:
        raise ConfigError(name, value, allowed) from None


def _gpu_devices(name: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    allowed = "CUDA device indices (0, 1, …) or GPU UUIDs ('GPU-…', 'MIG-…'), e.g. '0,1'"
    items: list[object]
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        items = [value]
    else:
        raise ConfigError(name, value, allowed)
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(name, value, allowed)
        if isinstance(item, int):
            if item < 0:
                raise ConfigError(name, value, allowed)
            out.append(str(item))
            continue
        if not isinstance(item, str):
            raise ConfigError(name, value, allowed)
        text = item.strip()
        if text.isdigit() or (text.startswith(("GPU-", "MIG-")) and len(text) > 4):
            out.append(text)
        else:
            raise ConfigError(name, value, allowed)
    if not out or len(set(out)) != len(out):
        raise ConfigError(name, value, allowed + " (non-empty, no duplicates)")
    return tuple(out)


# --------------------------------------------------------------------------- the config
def _meta(help_text: str, allowed: str) -> dict[str, str]:
    return {"help": help_text, "allowed": allowed}


@dataclass(frozen=True)
class CarbonConfig:
    """Validated, immutable settings for hf-eco2ai.

    Build it directly (``CarbonConfig(country="DE")``), from the environment
    (:meth:`from_env`), or both (``CarbonConfig.from_env(pue=1.1)``: arguments win over env).

    Example:
        >>> cfg = CarbonConfig(country="de", sample_interval=0.5)
        >>> cfg.country, cfg.sample_interval
        ('DE', 0.5)
        >>> CarbonConfig(pue=5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_eco2ai.config.ConfigError: hf-eco2ai: invalid value for 'pue' ...
    """

    sample_interval: float = field(
        default=1.0,
        metadata=_meta("Seconds between two sensor readings.", "0.05 to 60"),
    )
    pue: float = field(
        default=1.0,
        metadata=_meta(
            "Power usage effectiveness of the data centre, applied to attributed energy.",
            "1.0 to 3.0",
        ),
    )
    country: str | None = field(
        default=None,
        metadata=_meta(
            "Country of the grid (ISO 3166-1 alpha-2 or alpha-3); normalised to alpha-2.",
            "an ISO 3166 country code",
        ),
    )
    region: str | None = field(
        default=None,
        metadata=_meta(
            "Sub-national grid zone or cloud region (e.g. 'CA', 'us-east-1').", "a string"
        ),
    )
    carbon_intensity: float | None = field(
        default=None,
        metadata=_meta(
            "Grid carbon intensity override in gCO2e/kWh; wins over every lookup.", "0 to 2000"
        ),
    )
    carbon_table: str = field(
        default="builtin",
        metadata=_meta(
            "Which carbon-intensity table country/region lookups use.", "'builtin' or 'eco2ai'"
        ),
    )
    carbon_provider: str = field(
        default="none",
        metadata=_meta(
            "Live grid-intensity provider (opt-in, uses the network).",
            "'none', 'electricitymaps' or 'uk-carbon-intensity'",
        ),
    )
    carbon_refresh_interval: float = field(
        default=900.0,
        metadata=_meta("Seconds between two live grid-intensity fetches.", "60 to 86400"),
    )
    cloud_metadata: bool = field(
        default=False,
        metadata=_meta(
            "Opt in to asking the cloud metadata endpoint for the region (network, short timeout).",
            "true or false",
        ),
    )
    gpu_devices: tuple[str, ...] | None = field(
        default=None,
        metadata=_meta(
            "GPUs to measure, as CUDA indices or UUIDs; default: the GPUs this process owns.",
            "comma-separated indices or UUIDs",
        ),
    )
    track_gpu: bool = field(default=True, metadata=_meta("Measure GPUs (NVML).", "true or false"))
    track_cpu: bool = field(
        default=True, metadata=_meta("Measure the CPU (RAPL or TDP model).", "true or false")
    )
    track_ram: bool = field(
        default=True, metadata=_meta("Estimate RAM energy (RAM model).", "true or false")
    )
    cpu_tdp: float | None = field(
        default=None,
        metadata=_meta("CPU TDP override in watts for the TDP model (whole package).", "1 to 2000"),
    )
    ram_power_per_gb: float = field(
        default=0.375,
        metadata=_meta("RAM model: watts per GB of memory in use.", "0 to 10"),
    )
    output_dir: str = field(
        default="hf-eco2ai-runs",
        metadata=_meta("Directory for run reports.", "a path"),
    )
    step_span_every: int = field(
        default=0,
        metadata=_meta(
            "Emit a step span every N optimizer steps (0 = no step spans).", "0 to 1000000"
        ),
    )
    history_size: int = field(
        default=3600,
        metadata=_meta("Samples kept in memory (ring buffer) for reports.", "10 to 10000000"),
    )
    write_report: bool = field(
        default=True,
        metadata=_meta(
            "Write a run report (report.json, emissions.csv, power.png) under output_dir.",
            "true or false",
        ),
    )
    co2_budget: float | None = field(
        default=None,
        metadata=_meta("Emissions budget of a run in gCO2e.", "a number > 0 (up to 1e12)"),
    )
    energy_budget: float | None = field(
        default=None,
        metadata=_meta(
            "Energy budget of a run in joules (PUE applied).", "a number > 0 (up to 1e15)"
        ),
    )
    budget_action: str = field(
        default="warn",
        metadata=_meta(
            "What exceeding a budget does: log a warning, or stop training gracefully.",
            "'warn' or 'stop'",
        ),
    )
    project_name: str = field(
        default="hf-eco2ai",
        metadata=_meta("Project name written to reports (eco2ai's project_name).", "a string"),
    )
    experiment_description: str = field(
        default="",
        metadata=_meta("Free text written to reports (eco2ai's experiment_description).", "text"),
    )
    handle_sigterm: bool = field(
        default=True,
        metadata=_meta(
            "On SIGTERM (when no other handler is installed), end the open run's spans, write its"
            " report and flush telemetry, then die of SIGTERM as before (instrumentor only).",
            "true or false",
        ),
    )
    sources: Mapping[str, str] = field(
        default_factory=dict, compare=False, repr=False, metadata={"internal": "1"}
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(
            self,
            "sample_interval",
            float(_number("sample_interval", self.sample_interval, 0.05, 60)),
        )
        set_(self, "pue", float(_number("pue", self.pue, 1.0, 3.0)))
        set_(self, "country", _country("country", self.country))
        set_(self, "region", _nonempty_str("region", self.region, optional=True))
        set_(
            self,
            "carbon_intensity",
            _optional_number("carbon_intensity", self.carbon_intensity, 0, 2000),
        )
        set_(
            self, "carbon_table", _choice("carbon_table", self.carbon_table, ("builtin", "eco2ai"))
        )
        if self.carbon_table == "eco2ai":
            from hf_eco2ai.carbon.tables import ensure_table_available

            ensure_table_available(self.carbon_table)
        set_(
            self,
            "carbon_provider",
            _choice(
                "carbon_provider",
                self.carbon_provider,
                ("none", "electricitymaps", "uk-carbon-intensity"),
            ),
        )
        set_(
            self,
            "carbon_refresh_interval",
            float(_number("carbon_refresh_interval", self.carbon_refresh_interval, 60, 86400)),
        )
        for flag in ("cloud_metadata", "track_gpu", "track_cpu", "track_ram"):
            set_(self, flag, _bool(flag, getattr(self, flag)))
        set_(self, "gpu_devices", _gpu_devices("gpu_devices", self.gpu_devices))
        set_(self, "cpu_tdp", _optional_number("cpu_tdp", self.cpu_tdp, 1, 2000))
        set_(
            self,
            "ram_power_per_gb",
            float(_number("ram_power_per_gb", self.ram_power_per_gb, 0, 10)),
        )
        set_(self, "output_dir", _nonempty_str("output_dir", self.output_dir, optional=False))
        if "\x00" in self.output_dir:  # would only fail when the report is written, at the end
            raise ConfigError("output_dir", self.output_dir, "a path (no NUL character)")
        set_(
            self,
            "step_span_every",
            int(_number("step_span_every", self.step_span_every, 0, 1_000_000, integer=True)),
        )
        set_(
            self,
            "history_size",
            int(_number("history_size", self.history_size, 10, 10_000_000, integer=True)),
        )
        set_(self, "write_report", _bool("write_report", self.write_report))
        set_(self, "co2_budget", _optional_number("co2_budget", self.co2_budget, 1e-9, 1e12))
        set_(
            self, "energy_budget", _optional_number("energy_budget", self.energy_budget, 1e-9, 1e15)
        )
        set_(self, "budget_action", _choice("budget_action", self.budget_action, ("warn", "stop")))
        set_(self, "project_name", _nonempty_str("project_name", self.project_name, optional=False))
        if not isinstance(self.experiment_description, str):
            raise ConfigError("experiment_description", self.experiment_description, "a string")
        set_(self, "handle_sigterm", _bool("handle_sigterm", self.handle_sigterm))
        sources = dict(self.sources)
        for name in field_names():
            sources.setdefault(
                name, "default" if getattr(self, name) == _default(name) else "argument"
            )
        set_(self, "sources", sources)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CarbonConfig:
        """Build a config from ``OTEL_PYTHON_HF_ECO2AI_*`` variables, then apply ``overrides``.

        Unknown keyword arguments raise :class:`ConfigError`, as do unparsable env values.

        >>> CarbonConfig.from_env({"OTEL_PYTHON_HF_ECO2AI_TRACK_GPU": "false"}).track_gpu
        False
        """
        env = os.environ if environ is None else environ
        names = field_names()
        _warn_unknown_env(env, names)
        for key in overrides:
            if key not in names:
                raise ConfigError(key, overrides[key], "a CarbonConfig field: " + ", ".join(names))
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in names:
            raw = env.get(env_var_name(name))
            if raw is None:
                continue
            values[name] = _parse_env(name, raw)
            sources[name] = f"env {env_var_name(name)}"
        for key, value in overrides.items():
            values[key] = value
            sources[key] = "argument"
        return cls(**values, sources=sources)

    def replace(self, **changes: Any) -> CarbonConfig:
        """A copy with ``changes`` applied (validated; unknown names raise :class:`ConfigError`)."""
        names = field_names()
        for key in changes:
            if key not in names:
                raise ConfigError(key, changes[key], "a CarbonConfig field: " + ", ".join(names))
        sources = dict(self.sources)
        sources.update({key: "argument" for key in changes})
        return dataclasses.replace(self, **changes, sources=sources)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (no provenance)."""
        return {name: getattr(self, name) for name in field_names()}


OTHER_ENV_VARS = frozenset(
    {"OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT", "OTEL_PYTHON_HF_ECO2AI_MLFLOW_STARTUP_TIMEOUT"}
)
"""Variables with the prefix that are read elsewhere (not :class:`CarbonConfig` fields)."""


def _warn_unknown_env(env: Mapping[str, str], names: tuple[str, ...]) -> None:
    """Log once per variable when an ``OTEL_PYTHON_HF_ECO2AI_*`` name is not a setting (a typo
    would otherwise be ignored in silence), with the closest names."""
    import difflib
    import logging

    from hf_eco2ai._logging import warn_once

    known = {env_var_name(n) for n in names} | OTHER_ENV_VARS
    for key in sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known):
        suffixes = sorted(k[len(ENV_PREFIX) :] for k in known)  # the shared prefix would match
        close = difflib.get_close_matches(key[len(ENV_PREFIX) :], suffixes, n=2, cutoff=0.75)
        hint = f" (did you mean {' or '.join(ENV_PREFIX + c for c in close)}?)" if close else ""
        warn_once(
            logging.getLogger(__name__),
            f"unknown-env:{key}",
            "hf-eco2ai: %s is not a hf-eco2ai setting and is ignored%s;"
            " `hf-eco2ai doctor` lists the settings",
            key,
            hint,
        )


def field_names() -> tuple[str, ...]:
    """Public field names of :class:`CarbonConfig`, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(CarbonConfig) if "internal" not in f.metadata)


def field_docs() -> list[tuple[str, str, str, str, str]]:
    """``(field, env var, default, allowed, help)`` for every field (used by the docs)."""
    rows = []
    for f in dataclasses.fields(CarbonConfig):
        if "internal" in f.metadata:
            continue
        rows.append(
            (
                f.name,
                env_var_name(f.name),
                repr(_default(f.name)),
                f.metadata["allowed"],
                f.metadata["help"],
            )
        )
    return rows


def _default(name: str) -> Any:
    f = next(f for f in dataclasses.fields(CarbonConfig) if f.name == name)
    return None if f.default is dataclasses.MISSING else f.default


_INT_FIELDS = frozenset({"step_span_every", "history_size"})
_FLOAT_FIELDS = frozenset(
    {
        "sample_interval",
        "pue",
        "carbon_intensity",
        "carbon_refresh_interval",
        "cpu_tdp",
        "ram_power_per_gb",
        "co2_budget",
        "energy_budget",
    }
)


def _parse_env(name: str, raw: str) -> Any:
    text = raw.strip()
    default = _default(name)
    if text == "" and default is None:  # an empty optional variable means "not set"
        return None
    if name == "gpu_devices":
        return text.split(",")
    if isinstance(default, bool):
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(name, raw, "true or false (1/0, yes/no, on/off)")
    if name in _INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(name, raw, "an integer") from None
    if name in _FLOAT_FIELDS:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(name, raw, "a number") from None
    return text
