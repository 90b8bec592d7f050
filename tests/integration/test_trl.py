"""TRL's ``SFTTrainer``, ``DPOTrainer`` and ``RewardTrainer`` under hf-eco2ai.

They subclass ``transformers.Trainer`` and override ``training_step`` (calling ``super()``) and
``compute_loss``; the instrumentor patches ``Trainer.training_step`` on the base class only, so
each micro-batch is counted once. Tiny models from configs, a tokenizer trained here
(``tests/integration/scripts/trl_tiny.py``), no Hub.

What is counted (``batch_size_and_tokens`` in ``hf_eco2ai.integrations.transformers_callback``):
samples are dataset examples and tokens the elements of each micro-batch's ``input_ids``
(padding included). SFT: one row per example. DPO and reward modelling stack the chosen and the
rejected sequence of every pair in one batch: the integration counts a pair as **one** sample
(a preference trainer's rows are divided by two) and its tokens as both sequences' tokens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor_module
from tests.conftest import fake_monitor

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "tests" / "integration" / "scripts"
sys.path.insert(0, str(SCRIPTS))
import trl_tiny  # noqa: E402

pytestmark = pytest.mark.slow  # six tiny trainings and a subprocess: about two minutes

KINDS = ("sft", "dpo", "reward")
RUN = "transformers.trainer.train"


class Instrumented:
    """One instrumented training run's spans and metrics."""

    def __init__(self, tmp: Path) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.config = CarbonConfig(output_dir=str(tmp / "reports"), sample_interval=0.1)
        self.instrumentor = HFEco2AIInstrumentor()
        self.metrics: Any = None

    def __enter__(self) -> Instrumented:
        monitor_module.set_monitor_factory(fake_monitor)
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=self.config,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics = self.reader.get_metrics_data()  # callbacks yield nothing once uninstrumented
        self.instrumentor.uninstrument()
        monitor_module.set_monitor_factory(None)
        self.tracer_provider.shutdown()

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def metric(self, name: str) -> float:
        data = self.metrics
        assert data is not None
        values = [
            point.value
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for point in m.data.data_points
            if point.attributes.get("hf_eco2ai.framework") == "transformers"
        ]
        assert len(values) == 1, (name, values)
        return float(values[0])


def train(kind: str, output_dir: Path) -> tuple[Any, dict[str, torch.Tensor], int]:
    trainer = trl_tiny.BUILDERS[kind](str(output_dir))
    length = trl_tiny.sequence_length(kind, trainer)
    trainer.train()
    params = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    return trainer, params, length


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, torch.Tensor]]:
    """Parameters after training each model without instrumentation (same seeds)."""
    out = {}
    for kind in KINDS:
        _, params, _ = train(kind, tmp_path_factory.mktemp(f"plain-{kind}"))
        out[kind] = params
    return out


@pytest.fixture(scope="module")
def instrumented_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Any, Instrumented, int, dict[str, torch.Tensor]]]:
    """Each trainer trained once under ``instrument()`` (fake devices)."""
    runs = {}
    for kind in KINDS:
        tmp = tmp_path_factory.mktemp(f"instrumented-{kind}")
        with Instrumented(tmp) as inst:
            trainer, params, length = train(kind, tmp / "out")
        runs[kind] = (trainer, inst, length, params)
    return runs


@pytest.mark.parametrize("kind", KINDS)
def test_one_run_span_with_energy_samples_and_tokens(
    kind: str, instrumented_runs: dict[str, Any]
) -> None:
    trainer, inst, length, _ = instrumented_runs[kind]
    epochs, examples = trl_tiny.EPOCHS, trl_tiny.EXAMPLES
    rows = trl_tiny.ROWS_PER_EXAMPLE[kind]
    runs = inst.spans(RUN)
    assert len(runs) == 1, "one run span per train()"
    run = runs[0]
    attrs = dict(run.attributes or {})
    assert attrs["hf_eco2ai.energy.joules"] > 0
    assert attrs["hf_eco2ai.emissions.grams"] > 0
    assert attrs["hf_eco2ai.energy.joules.low"] < attrs["hf_eco2ai.energy.joules.high"]
    # counted from the dataset: every example once per epoch, never twice
    expected_samples = examples * epochs  # a preference pair is one sample
    expected_tokens = examples * rows * length * epochs
    assert attrs["hf_eco2ai.training.samples"] == expected_samples
    assert attrs["hf_eco2ai.training.tokens"] == expected_tokens
    steps = trainer.state.global_step
    assert steps == epochs * examples // trl_tiny.BATCH
    assert attrs["hf_eco2ai.global_step"] == steps
    assert len(inst.spans("transformers.trainer.epoch")) == epochs
    # the metrics agree with the span (no second count anywhere)
    assert inst.metric("hf_eco2ai.training.samples") == expected_samples
    assert inst.metric("hf_eco2ai.training.tokens") == expected_tokens
    assert inst.metric("hf_eco2ai.training.steps") == steps
    # the run report too
    report_dirs = list(Path(inst.config.output_dir).glob("*/report.json"))
    assert len(report_dirs) == 1
    report = json.loads(report_dirs[0].read_text())
    assert json.dumps(report).count(f'"samples": {expected_samples}') >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_training_results_unchanged(
    kind: str, instrumented_runs: dict[str, Any], baselines: dict[str, Any]
) -> None:
    _, _, _, params = instrumented_runs[kind]
    plain = baselines[kind]
    assert set(params) == set(plain)
    different = [k for k in plain if not torch.equal(plain[k], params[k])]
    assert different == [], f"parameters changed by instrumentation: {different}"


@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_preference_pairs_counted_as_examples(kind: str, instrumented_runs: dict[str, Any]) -> None:
    _, inst, _, _ = instrumented_runs[kind]
    samples = dict(inst.spans(RUN)[0].attributes or {})["hf_eco2ai.training.samples"]
    assert samples == trl_tiny.EXAMPLES * trl_tiny.EPOCHS


def _console_spans(stdout: str) -> list[dict[str, Any]]:
    """The spans ConsoleSpanExporter printed (one JSON object each)."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r'^\{\s*"name"', stdout, flags=re.MULTILINE):
        obj, _ = decoder.raw_decode(stdout, match.start())
        found.append(obj)
    return found


def test_sft_under_opentelemetry_instrument(tmp_path: Path) -> None:
    result_path = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR=str(tmp_path / "reports"),
        OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL="0.1",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
        HF_HUB_OFFLINE="1",
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "opentelemetry-instrument"),
            sys.executable,
            str(SCRIPTS / "trl_tiny.py"),
            "sft",
            str(tmp_path / "out"),
            str(result_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    facts = json.loads(result_path.read_text())
    runs = [s for s in _console_spans(proc.stdout) if s["name"] == RUN]
    assert len(runs) == 1, proc.stdout[-2000:]
    attrs = runs[0]["attributes"]
    samples = facts["examples"] * facts["epochs"]
    assert attrs["hf_eco2ai.training.samples"] == samples
    assert attrs["hf_eco2ai.training.tokens"] == samples * facts["length"]
    assert attrs["hf_eco2ai.global_step"] == facts["global_step"]
    assert attrs["hf_eco2ai.energy.joules"] > 0
    assert list((tmp_path / "reports").glob("*/report.json"))
