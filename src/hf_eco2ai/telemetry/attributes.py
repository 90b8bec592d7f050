"""The single registry of ``hf_eco2ai.*`` span attributes: names, types, where, meaning.

The metric registry (:mod:`hf_eco2ai.telemetry.names`) names what is measured continuously;
this one names what the spans carry when they end. Code that writes or reads a span attribute
uses these constants (the spans, the MLflow bridge), so a key cannot be spelled two ways; the
docs' span-attribute table is generated from :data:`ATTRIBUTES` (``python -m
hf_eco2ai.telemetry.attributes`` prints it; ``tests/unit/test_span_attributes.py`` fails when
``docs/metrics.md`` is stale).

``mlflow`` says what the MLflow bridge makes of an attribute of a run span: ``param``
(configuration: MLflow params cannot change once logged); the others become metrics when
numeric and tags otherwise.

Example:
    >>> BUDGET_CO2_GRAMS
    'hf_eco2ai.budget.co2.grams'
    >>> lookup(energy_by_type("gpu")).name
    'hf_eco2ai.energy.{hw.type}.joules'
    >>> BUDGET_CO2_GRAMS in MLFLOW_PARAMS
    True
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

PREFIX = "hf_eco2ai."

# Where an attribute appears.
EVERY_SPAN = "every span"
"""Every energy window: run, epoch, evaluation/validation and step spans."""
RUN = "run span"
RUN_WITH_BUDGET = "run span, with a budget"
RUN_PROJECTED = "run span, when progress is known"
RUN_DISTRIBUTED = "run span of global rank 0 (distributed)"
TRANSFORMERS_RUN = "run span (transformers)"
LIGHTNING_RUN = "run span (Lightning)"
POSITION = "run, epoch, evaluation and step spans"
EVALUATION = "evaluation / validation spans"
VALIDATION = "validation spans (Lightning)"
IDENTITY = "every span (rank identity, when no Resource carries it)"

PARAM = "param"
"""The MLflow bridge logs it as a param (configuration)."""


@dataclass(frozen=True)
class SpanAttribute:
    """One span attribute: key (``{…}`` marks a part filled in), value type, where, meaning."""

    name: str
    type: str
    spans: str
    description: str
    mlflow: str = ""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{[^}]+\}", self.name)
        regex = r"[^.]+(?:\.[^.]+)*".join(map(re.escape, parts))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def templated(self) -> bool:
        """True when part of the key is filled in (a device type, a metric name)."""
        return "{" in self.name


# ----------------------------------------------------------------- every energy window
ENERGY_JOULES = PREFIX + "energy.joules"
ENERGY_JOULES_LOW = PREFIX + "energy.joules.low"
ENERGY_JOULES_HIGH = PREFIX + "energy.joules.high"
EMISSIONS_GRAMS = PREFIX + "emissions.grams"
ENERGY_METHOD = PREFIX + "energy.method"
ENERGY_EXTRAPOLATED = PREFIX + "energy.extrapolated"
CARBON_INTENSITY = PREFIX + "carbon_intensity"
GRID_ZONE = PREFIX + "grid.zone"
GRID_SOURCE = PREFIX + "grid.source"
PUE = PREFIX + "pue"
DURATION_SECONDS = PREFIX + "duration.seconds"
ENERGY_SCOPE = PREFIX + "energy.scope"
ENERGY_HOST_JOULES = PREFIX + "energy.host.joules"
ENERGY_BAND_COVERAGE = PREFIX + "energy.band.coverage"
ENERGY_GAP_SECONDS = PREFIX + "energy.gap.seconds"
HOST_OTHER_CPU_SHARE = PREFIX + "host.other_cpu_share"
RUN_ENDED_LATE = PREFIX + "run.ended_late"
DEVICE_IDS = PREFIX + "device.ids"
DEVICE_TYPES = PREFIX + "device.types"
DEVICE_JOULES = PREFIX + "device.joules"
ENERGY_BY_TYPE = PREFIX + "energy.{hw.type}.joules"
EMISSIONS_BY_TYPE = PREFIX + "emissions.{hw.type}.grams"

# ----------------------------------------------------------------- run totals and budgets
TRAINING_SAMPLES = PREFIX + "training.samples"
TRAINING_TOKENS = PREFIX + "training.tokens"
ENERGY_PER_SAMPLE_JOULES = PREFIX + "energy_per_sample.joules"
ENERGY_PER_TOKEN_JOULES = PREFIX + "energy_per_token.joules"
PROJECTED_ENERGY_JOULES = PREFIX + "projected.energy.joules"
PROJECTED_EMISSIONS_GRAMS = PREFIX + "projected.emissions.grams"
PROJECTED_PROGRESS = PREFIX + "projected.progress"
BUDGET_ACTION = PREFIX + "budget.action"
BUDGET_CO2_GRAMS = PREFIX + "budget.co2.grams"
BUDGET_ENERGY_JOULES = PREFIX + "budget.energy.joules"
BUDGET_PROJECTED_OVER = PREFIX + "budget.projected_over"
BUDGET_EXCEEDED = PREFIX + "budget.exceeded"
BUDGET_STOPPED = PREFIX + "budget.stopped"

# ----------------------------------------------------------------- framework facts
FRAMEWORK = PREFIX + "framework"
MODEL_CLASS = PREFIX + "model.class"
MODEL_PARAMETERS = PREFIX + "model.parameters"
GLOBAL_STEP = PREFIX + "global_step"
EPOCH = PREFIX + "epoch"
MAX_STEPS = PREFIX + "max_steps"
WORLD_SIZE = PREFIX + "world_size"
PER_DEVICE_BATCH_SIZE = PREFIX + "per_device_batch_size"
GRADIENT_ACCUMULATION_STEPS = PREFIX + "gradient_accumulation_steps"
NUM_TRAIN_EPOCHS = PREFIX + "num_train_epochs"
MAX_EPOCHS = PREFIX + "max_epochs"
ACCUMULATE_GRAD_BATCHES = PREFIX + "accumulate_grad_batches"
NUM_NODES = PREFIX + "num_nodes"
NUM_DEVICES = PREFIX + "num_devices"
PRECISION = PREFIX + "precision"
LIGHTNING_NAMESPACE = PREFIX + "lightning.namespace"
LIGHTNING_VERSION = PREFIX + "lightning.version"
LIGHTNING_STRATEGY = PREFIX + "lightning.strategy"
SANITY_CHECK = PREFIX + "sanity_check"
EVAL_METRIC = PREFIX + "eval.{metric}"
RANK = PREFIX + "rank"
LOCAL_RANK = PREFIX + "local_rank"

# ----------------------------------------------------------------- job totals (distributed)
JOB_ENERGY_JOULES = PREFIX + "job.energy.joules"
JOB_EMISSIONS_GRAMS = PREFIX + "job.emissions.grams"
JOB_ENERGY_BY_TYPE = PREFIX + "job.energy.{hw.type}.joules"
JOB_EMISSIONS_BY_TYPE = PREFIX + "job.emissions.{hw.type}.grams"
JOB_WORLD_SIZE = PREFIX + "job.world_size"
JOB_RANKS = PREFIX + "job.ranks"
JOB_HOSTS = PREFIX + "job.hosts"
JOB_TRAINING_SAMPLES = PREFIX + "job.training.samples"
JOB_TRAINING_TOKENS = PREFIX + "job.training.tokens"
JOB_ENERGY_PER_SAMPLE_JOULES = PREFIX + "job.energy_per_sample.joules"
JOB_COMPLETE = PREFIX + "job.complete"
JOB_MISSING_RANKS = PREFIX + "job.missing_ranks"


def _r(name: str, type_: str, spans: str, description: str, mlflow: str = "") -> SpanAttribute:
    assert name.startswith(PREFIX)
    return SpanAttribute(name, type_, spans, description, mlflow)


ATTRIBUTES: tuple[SpanAttribute, ...] = (
    _r(ENERGY_JOULES, "double", EVERY_SPAN, "Energy (J, PUE applied) between the span's start and end."),
    _r(ENERGY_JOULES_LOW, "double", EVERY_SPAN, "Lower bound of that energy (the estimated devices' uncertainty)."),
    _r(ENERGY_JOULES_HIGH, "double", EVERY_SPAN, "Upper bound of that energy."),
    _r(EMISSIONS_GRAMS, "double", EVERY_SPAN, "Grams CO2e for that energy (intensity integrated over the span)."),
    _r(ENERGY_BY_TYPE, "double", EVERY_SPAN, "Energy (J) of one device type (`gpu`, `cpu`, `memory`)."),
    _r(EMISSIONS_BY_TYPE, "double", EVERY_SPAN, "Grams CO2e of one device type."),
    _r(ENERGY_METHOD, "string", EVERY_SPAN, "How the energy was obtained: the measurement methods, comma-separated.", PARAM),
    _r(ENERGY_SCOPE, "string", EVERY_SPAN, "Whose energy the span's totals are: `job` (this process tree's share of each device; see `energy.host.joules` for what the hardware drew)."),
    _r(ENERGY_HOST_JOULES, "double", EVERY_SPAN, "Host scope: what the devices drew in the window, every process included (J, PUE applied)."),
    _r(ENERGY_BAND_COVERAGE, "double", EVERY_SPAN, "Share of cases the band `[joules.low, joules.high]` covers (only when estimated devices contributed)."),
    _r(ENERGY_GAP_SECONDS, "double", EVERY_SPAN, "Seconds of the window no reading covers (a stalled sampler): not extrapolated, not counted (only when > 0)."),
    _r(HOST_OTHER_CPU_SHARE, "double", EVERY_SPAN, "Share of the host's busy CPU time used by other processes during the window (when known)."),
    _r(ENERGY_EXTRAPOLATED, "boolean", EVERY_SPAN, "True when part of the window is not backed by a reading inside it (shorter than one sampler interval, a sampler gap, a stalled device); the method (measured or estimated) is `energy.method`."),
    _r(CARBON_INTENSITY, "double", EVERY_SPAN, "Mean carbon intensity over the span (g/kWh)."),
    _r(GRID_ZONE, "string", EVERY_SPAN, "Grid zone of the carbon intensity (country or region code).", PARAM),
    _r(GRID_SOURCE, "string", EVERY_SPAN, "Where the carbon intensity came from (table and year, live provider, config).", PARAM),
    _r(PUE, "double", EVERY_SPAN, "Power usage effectiveness applied to the energy.", PARAM),
    _r(DURATION_SECONDS, "double", EVERY_SPAN, "Measured duration of the window (s, monotonic clock)."),
    _r(TRAINING_SAMPLES, "int", RUN, "Training samples counted in the run."),
    _r(TRAINING_TOKENS, "int", RUN, "Training tokens counted in the run (when known)."),
    _r(ENERGY_PER_SAMPLE_JOULES, "double", RUN, "Run energy per training sample (J)."),
    _r(ENERGY_PER_TOKEN_JOULES, "double", RUN, "Run energy per training token (J)."),
    _r(PROJECTED_ENERGY_JOULES, "double", RUN_PROJECTED, "Energy projected for the whole run (J), at the last projection."),
    _r(PROJECTED_EMISSIONS_GRAMS, "double", RUN_PROJECTED, "Emissions projected for the whole run (g CO2e)."),
    _r(PROJECTED_PROGRESS, "double", RUN_PROJECTED, "Progress (0 to 1) at the last projection."),
    _r(BUDGET_ACTION, "string", RUN_WITH_BUDGET, "What exceeding the budget does: `warn` or `stop`.", PARAM),
    _r(BUDGET_CO2_GRAMS, "double", RUN_WITH_BUDGET, "The run's emissions budget (g CO2e), when set.", PARAM),
    _r(BUDGET_ENERGY_JOULES, "double", RUN_WITH_BUDGET, "The run's energy budget (J), when set.", PARAM),
    _r(BUDGET_PROJECTED_OVER, "boolean", RUN_WITH_BUDGET, "A projection went over a budget during the run."),
    _r(BUDGET_EXCEEDED, "boolean", RUN_WITH_BUDGET, "The run's energy or emissions went over a budget."),
    _r(BUDGET_STOPPED, "boolean", RUN_WITH_BUDGET, "Training was asked to stop by the budget."),
    _r(FRAMEWORK, "string", RUN, "`transformers` or `lightning`.", PARAM),
    _r(MODEL_CLASS, "string", RUN, "Class name of the trained model.", PARAM),
    _r(MODEL_PARAMETERS, "int", RUN, "Parameter count of the trained model.", PARAM),
    _r(GLOBAL_STEP, "int", POSITION, "Optimizer steps done when the span ended (a step span: its step)."),
    _r(EPOCH, "double", POSITION, "Epoch (transformers: fractional; Lightning: the epoch index)."),
    _r(MAX_STEPS, "int", RUN, "Planned optimizer steps (0 or -1: unknown).", PARAM),
    _r(WORLD_SIZE, "int", RUN, "Processes in the job.", PARAM),
    _r(PER_DEVICE_BATCH_SIZE, "int", TRANSFORMERS_RUN, "`per_device_train_batch_size`.", PARAM),
    _r(GRADIENT_ACCUMULATION_STEPS, "int", TRANSFORMERS_RUN, "`gradient_accumulation_steps`.", PARAM),
    _r(NUM_TRAIN_EPOCHS, "double", TRANSFORMERS_RUN, "`num_train_epochs`.", PARAM),
    _r(MAX_EPOCHS, "int", LIGHTNING_RUN, "`Trainer.max_epochs`.", PARAM),
    _r(ACCUMULATE_GRAD_BATCHES, "int", LIGHTNING_RUN, "`Trainer.accumulate_grad_batches`.", PARAM),
    _r(NUM_NODES, "int", LIGHTNING_RUN, "`Trainer.num_nodes`.", PARAM),
    _r(NUM_DEVICES, "int", LIGHTNING_RUN, "`Trainer.num_devices`.", PARAM),
    _r(PRECISION, "string", LIGHTNING_RUN, "`Trainer.precision`.", PARAM),
    _r(LIGHTNING_STRATEGY, "string", LIGHTNING_RUN, "Class name of the Lightning strategy.", PARAM),
    _r(LIGHTNING_NAMESPACE, "string", LIGHTNING_RUN, "`lightning.pytorch` or `pytorch_lightning`."),
    _r(LIGHTNING_VERSION, "string", LIGHTNING_RUN, "Version of that Lightning package."),
    _r(SANITY_CHECK, "boolean", VALIDATION, "True for Lightning's sanity-check validation."),
    _r(EVAL_METRIC, "double", EVALUATION, "One scalar evaluation metric (e.g. `hf_eco2ai.eval.eval_loss`)."),
    _r(RANK, "int", IDENTITY, "Global rank of the process."),
    _r(LOCAL_RANK, "int", IDENTITY, "Rank of the process on its host."),
    _r(JOB_ENERGY_JOULES, "double", RUN_DISTRIBUTED, "Energy of the whole job: every reporting rank (J)."),
    _r(JOB_EMISSIONS_GRAMS, "double", RUN_DISTRIBUTED, "Emissions of the whole job (g CO2e)."),
    _r(JOB_ENERGY_BY_TYPE, "double", RUN_DISTRIBUTED, "Job energy of one device type (J)."),
    _r(JOB_EMISSIONS_BY_TYPE, "double", RUN_DISTRIBUTED, "Job emissions of one device type (g CO2e)."),
    _r(JOB_WORLD_SIZE, "int", RUN_DISTRIBUTED, "Ranks the job was started with."),
    _r(JOB_RANKS, "int", RUN_DISTRIBUTED, "Ranks that reported."),
    _r(JOB_HOSTS, "int", RUN_DISTRIBUTED, "Hosts that reported."),
    _r(JOB_TRAINING_SAMPLES, "int", RUN_DISTRIBUTED, "Training samples of all reporting ranks."),
    _r(JOB_TRAINING_TOKENS, "int", RUN_DISTRIBUTED, "Training tokens of all reporting ranks (when known)."),
    _r(JOB_ENERGY_PER_SAMPLE_JOULES, "double", RUN_DISTRIBUTED, "Job energy per training sample (J)."),
    _r(JOB_COMPLETE, "boolean", RUN_DISTRIBUTED, "True when every rank reported."),
    _r(RUN_ENDED_LATE, "boolean", RUN, "True when training left the run without an end event and it was ended at its last training event."),
    _r(DEVICE_IDS, "string[]", "`measure()` spans", "`hw.id` of each measured device (parallel to `device.types` and `device.joules`)."),
    _r(DEVICE_TYPES, "string[]", "`measure()` spans", "`hw.type` of each measured device."),
    _r(DEVICE_JOULES, "double[]", "`measure()` spans", "Energy of each measured device in the window (J, job scope, PUE applied)."),
    _r(JOB_MISSING_RANKS, "int[]", RUN_DISTRIBUTED, "Ranks that did not report (only when some are missing)."),
)  # fmt: skip

BY_NAME: dict[str, SpanAttribute] = {a.name: a for a in ATTRIBUTES}
MLFLOW_PARAMS: frozenset[str] = frozenset(a.name for a in ATTRIBUTES if a.mlflow == PARAM)
"""Run-span attributes the MLflow bridge logs as params."""


def energy_by_type(hw_type: str) -> str:
    """The per-device-type energy key.

    >>> energy_by_type("gpu")
    'hf_eco2ai.energy.gpu.joules'
    """
    return ENERGY_BY_TYPE.replace("{hw.type}", hw_type)


def emissions_by_type(hw_type: str) -> str:
    """The per-device-type emissions key.

    >>> emissions_by_type("cpu")
    'hf_eco2ai.emissions.cpu.grams'
    """
    return EMISSIONS_BY_TYPE.replace("{hw.type}", hw_type)


def eval_metric(name: str) -> str:
    """The key of one evaluation metric.

    >>> eval_metric("eval_loss")
    'hf_eco2ai.eval.eval_loss'
    """
    return EVAL_METRIC.replace("{metric}", name)


def lookup(key: str) -> SpanAttribute | None:
    """The registry entry ``key`` is an instance of (exact names first), or None.

    >>> lookup("hf_eco2ai.job.energy.memory.joules").name
    'hf_eco2ai.job.energy.{hw.type}.joules'
    >>> lookup("hf_eco2ai.budget.emissions.grams") is None
    True
    """
    exact = BY_NAME.get(key)
    if exact is not None:
        return exact
    for attribute in ATTRIBUTES:
        if attribute.templated and attribute.pattern.match(key):
            return attribute
    return None


def markdown_table() -> str:
    """The span-attribute reference as a Markdown table (``docs/metrics.md``)."""
    lines = [
        "| attribute | type | on | MLflow | meaning |",
        "|---|---|---|---|---|",
    ]
    for a in ATTRIBUTES:
        lines.append(f"| `{a.name}` | {a.type} | {a.spans} | {a.mlflow or '-'} | {a.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - docs generation entry
    sys.stdout.write(markdown_table())
