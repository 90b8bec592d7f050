"""Per-step cost of the Trainer integration (pytest-benchmark; budgets reported, not timed tests).

Run: ``.venv/bin/python -m pytest tests/performance --benchmark-only``
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_eco2ai import CarbonConfig, Eco2AICallback, HFEco2AIInstrumentor
from hf_eco2ai import monitor as monitor_module
from tests.conftest import fake_monitor


@pytest.fixture
def instrumented_callback(tmp_path: Any) -> Iterator[tuple[Eco2AICallback, Any, Any, Any]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    monitor_module.set_monitor_factory(fake_monitor)
    inst = HFEco2AIInstrumentor()
    config = CarbonConfig(sample_interval=1.0)
    inst.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(), config=config)
    try:
        cb = Eco2AICallback(config)
        args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
        state, control = TrainerState(), TrainerControl()
        cb.on_train_begin(args, state, control)
        yield cb, args, state, control
        cb.on_train_end(args, state, control)
    finally:
        inst.uninstrument()
        monitor_module.set_monitor_factory(None)


def test_per_step_callback_cost(benchmark: Any, instrumented_callback: Any) -> None:
    """Everything the integration does per optimizer step with step spans off."""
    cb, args, state, control = instrumented_callback
    batch = {"input_ids": torch.zeros(8, 32, dtype=torch.long)}

    def one_step() -> None:
        cb.on_step_begin(args, state, control)
        cb.count_batch(batch)
        state.global_step += 1
        cb.on_step_end(args, state, control)

    benchmark(one_step)
    assert cb.run is not None
    assert cb.run.counters.run_samples == 8 * state.global_step
    assert cb.run.counters.run_tokens == 8 * 32 * state.global_step
