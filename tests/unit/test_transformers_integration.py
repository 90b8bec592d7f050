from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import wrapt
from opentelemetry.test.test_base import TestBase
from opentelemetry.trace import StatusCode
from transformers import TrainerCallback

from hf_eco2ai import CarbonConfig, Eco2AICallback, HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.telemetry.session import active_session
from tests.conftest import fake_monitor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from train_hf import make_trainer


class Boom(RuntimeError):
    pass


class RaiseAtStep(TrainerCallback):  # type: ignore[misc]
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise Boom("injected failure")


class TrainerInstrumentationTest(TestBase):
    def setUp(self) -> None:
        super().setUp()
        monitor_module.set_monitor_factory(fake_monitor)
        self.tmp = tempfile.TemporaryDirectory()
        self.instrumentor = HFEco2AIInstrumentor()
        self.config = CarbonConfig(sample_interval=0.05)
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=self.config,
        )

    def tearDown(self) -> None:
        self.instrumentor.uninstrument()
        monitor_module.set_monitor_factory(None)
        self.tmp.cleanup()
        super().tearDown()

    def trainer(self, **kwargs: Any) -> Any:
        return make_trainer(self.tmp.name, train_size=64, eval_size=16, **kwargs)

    def spans_by_name(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for span in self.get_finished_spans():
            out.setdefault(span.name, []).append(span)
        return out

    # ------------------------------------------------------------------ attachment
    def run_spans(self) -> list[Any]:
        return self.spans_by_name().get("transformers.trainer.train", [])

    def test_callback_list_is_the_users(self) -> None:
        self.instrumentor.uninstrument()
        plain = [type(c) for c in self.trainer().callback_handler.callbacks]
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=self.config,
        )
        trainer = self.trainer(epochs=1)
        self.assertEqual([type(c) for c in trainer.callback_handler.callbacks], plain)
        trainer.train()
        self.assertEqual([type(c) for c in trainer.callback_handler.callbacks], plain)
        self.assertEqual(len(self.run_spans()), 1)

    def test_explicit_callback_measures_alone(self) -> None:
        explicit = Eco2AICallback(self.config)
        trainer = self.trainer(epochs=1, callbacks=[explicit])
        ours = [c for c in trainer.callback_handler.callbacks if isinstance(c, Eco2AICallback)]
        self.assertEqual(ours, [explicit])
        trainer.train()
        self.assertEqual(len(self.run_spans()), 1)
        self.assertIsNotNone(explicit.last_summary)

    def test_explicit_callback_class_measures_alone(self) -> None:
        trainer = self.trainer(epochs=1, callbacks=[Eco2AICallback])
        ours = [c for c in trainer.callback_handler.callbacks if isinstance(c, Eco2AICallback)]
        self.assertEqual(len(ours), 1)
        trainer.train()
        self.assertEqual(len(self.run_spans()), 1)

    def test_trainer_built_before_instrument_is_measured(self) -> None:
        self.instrumentor.uninstrument()
        trainer = self.trainer(epochs=1)
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=self.config,
        )
        trainer.train()
        self.assertEqual(len(self.run_spans()), 1)

    def test_positional_arguments_and_subclass(self) -> None:
        from transformers import Trainer

        class MyTrainer(Trainer):  # type: ignore[misc]
            pass

        base = self.trainer()
        cb = Eco2AICallback(self.config)
        trainer = MyTrainer(
            base.model,
            base.args,
            None,
            base.train_dataset,
            base.eval_dataset,
            None,
            None,
            None,
            None,
            [cb],
        )
        from hf_eco2ai.instrumentor import measuring_callback

        self.assertIs(measuring_callback(trainer), cb)
        sub = MyTrainer(
            model=base.model,
            args=base.args,
            train_dataset=base.train_dataset,
            eval_dataset=base.eval_dataset,
        )
        hidden = measuring_callback(sub)
        self.assertIsInstance(hidden, Eco2AICallback)
        self.assertTrue(hidden.injected)
        self.assertNotIn(hidden, sub.callback_handler.callbacks)

    # ------------------------------------------------------------------ spans
    def test_run_epoch_evaluate_spans_with_energy(self) -> None:
        trainer = self.trainer(epochs=2)
        trainer.train()
        spans = self.spans_by_name()
        run = spans["transformers.trainer.train"]
        epochs = spans["transformers.trainer.epoch"]
        evals = spans["transformers.trainer.evaluate"]
        self.assertEqual(len(run), 1)
        self.assertEqual(len(epochs), 2)
        self.assertEqual(len(evals), 2)
        self.assertNotIn("transformers.trainer.step", spans)
        run_span = run[0]
        for span in epochs:
            self.assertEqual(span.parent.span_id, run_span.context.span_id)
            self.assertEqual(span.kind.name, "INTERNAL")
        # the Trainer evaluates right after on_epoch_end: evaluation spans are children of the run
        for span in evals:
            self.assertEqual(span.parent.span_id, run_span.context.span_id)
            self.assertIn("hf_eco2ai.eval.eval_loss", span.attributes)
        attrs = run_span.attributes
        self.assertGreater(attrs["hf_eco2ai.energy.joules"], 0)
        self.assertGreater(attrs["hf_eco2ai.emissions.grams"], 0)
        self.assertGreater(attrs["hf_eco2ai.energy.gpu.joules"], 0)
        self.assertIn("hf_eco2ai.energy.cpu.joules", attrs)
        self.assertEqual(attrs["hf_eco2ai.energy.method"], "nvml-energy,ram-model,tdp-model")
        self.assertLessEqual(attrs["hf_eco2ai.energy.joules.low"], attrs["hf_eco2ai.energy.joules"])
        self.assertGreaterEqual(
            attrs["hf_eco2ai.energy.joules.high"], attrs["hf_eco2ai.energy.joules"]
        )
        self.assertEqual(attrs["hf_eco2ai.model.class"], "BertForSequenceClassification")
        self.assertGreater(attrs["hf_eco2ai.model.parameters"], 10_000)
        self.assertEqual(attrs["hf_eco2ai.per_device_batch_size"], 8)
        self.assertEqual(attrs["hf_eco2ai.gradient_accumulation_steps"], 1)
        self.assertEqual(attrs["hf_eco2ai.world_size"], 1)
        self.assertEqual(attrs["hf_eco2ai.global_step"], 16)
        self.assertEqual(attrs["hf_eco2ai.training.samples"], 128)
        self.assertEqual(attrs["hf_eco2ai.training.tokens"], 128 * 32)
        self.assertAlmostEqual(
            attrs["hf_eco2ai.energy_per_sample.joules"], attrs["hf_eco2ai.energy.joules"] / 128
        )
        self.assertAlmostEqual(
            attrs["hf_eco2ai.energy_per_token.joules"], attrs["hf_eco2ai.energy.joules"] / 4096
        )
        self.assertEqual(attrs["hf_eco2ai.grid.zone"], "XX")
        self.assertAlmostEqual(attrs["hf_eco2ai.carbon_intensity"], 100.0)
        # energy per window is consistent with the constant 255 W x PUE 1 of the fake devices
        duration = (run_span.end_time - run_span.start_time) / 1e9
        self.assertAlmostEqual(attrs["hf_eco2ai.energy.joules"] / duration, 255.0, delta=30.0)
        # epochs and evaluations sum to the run within the sampler's resolution
        parts = sum(s.attributes["hf_eco2ai.energy.joules"] for s in epochs + evals)
        gap = attrs["hf_eco2ai.energy.joules"] - parts
        self.assertGreaterEqual(gap, -1.0)
        self.assertLess(gap, 255.0 * 2 * self.config.sample_interval + 0.15 * 255.0)

    def test_step_spans_sampled(self) -> None:
        self.instrumentor.uninstrument()
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=self.config.replace(step_span_every=4),
        )
        self.trainer(epochs=1).train()
        steps = self.spans_by_name()["transformers.trainer.step"]
        self.assertEqual([s.attributes["hf_eco2ai.global_step"] for s in steps], [4, 8])
        self.assertIn("hf_eco2ai.energy.joules", steps[0].attributes)

    def test_error_path_ends_spans_with_error(self) -> None:
        trainer = self.trainer(epochs=2, callbacks=[RaiseAtStep(3)])
        with self.assertRaises(Boom):
            trainer.train()
        spans = self.spans_by_name()
        run = spans["transformers.trainer.train"][0]
        self.assertEqual(run.status.status_code, StatusCode.ERROR)
        self.assertEqual(run.attributes["error.type"], "Boom")
        self.assertEqual(run.events[0].name, "exception")
        self.assertGreater(run.attributes["hf_eco2ai.energy.joules"], 0)
        epoch = spans["transformers.trainer.epoch"][0]
        self.assertEqual(epoch.status.status_code, StatusCode.ERROR)

    def test_evaluate_and_predict_outside_training_are_runs_of_their_own(self) -> None:
        trainer = self.trainer()
        trainer.evaluate()
        trainer.predict(trainer.eval_dataset)
        spans = self.spans_by_name()
        for name in ("transformers.trainer.evaluate", "transformers.trainer.predict"):
            (span,) = spans[name]
            self.assertIsNone(span.parent)
            self.assertGreater(span.attributes["hf_eco2ai.energy.joules"], 0)
        self.assertNotIn("transformers.trainer.train", spans)
        reports = list(Path(self.tmp.name).glob("hf-eco2ai/*/report.json"))
        self.assertEqual(len(reports), 2)

    def test_log_records_carry_energy(self) -> None:
        trainer = self.trainer(epochs=1)
        trainer.train()
        logged = [h for h in trainer.state.log_history if "hf_eco2ai/energy_kwh" in h]
        self.assertTrue(logged)
        self.assertGreater(logged[-1]["hf_eco2ai/energy_kwh"], 0)
        self.assertIn("hf_eco2ai/emissions_g", logged[-1])
        self.assertIn("hf_eco2ai/energy_per_sample_j", logged[-1])

    def test_summary_logged_once(self) -> None:
        with self.assertLogs("hf_eco2ai", level=logging.INFO) as logs:
            self.trainer(epochs=1).train()
        lines = [r for r in logs.output if "run used" in r]
        self.assertEqual(len(lines), 1)
        self.assertIn("CO2e", lines[0])
        self.assertIn("J/sample", lines[0])

    # ------------------------------------------------------------------ metrics
    def test_metrics_names_units_and_values(self) -> None:
        self.trainer(epochs=1).train()
        metrics = {m.name: m for m in self.get_sorted_metrics()}
        for name, unit in [
            ("hw.energy", "J"),
            ("hw.power", "W"),
            ("hf_eco2ai.energy", "J"),
            ("hf_eco2ai.emissions", "g"),
            ("hf_eco2ai.carbon_intensity", "g/kW.h"),
            ("hf_eco2ai.training.steps", "{step}"),
            ("hf_eco2ai.training.samples", "{sample}"),
            ("hf_eco2ai.training.tokens", "{token}"),
            ("hf_eco2ai.training.energy_per_sample", "J/{sample}"),
            ("hf_eco2ai.training.energy_per_token", "J/{token}"),
            ("hf_eco2ai.sensor.errors", "{error}"),
        ]:
            self.assertIn(name, metrics)
            self.assertEqual(metrics[name].unit, unit)
        hw = {p.attributes["hw.id"]: p for p in metrics["hw.energy"].data.data_points}
        self.assertEqual(set(hw), {"GPU-fake-0", "cpu", "memory"})
        self.assertEqual(hw["GPU-fake-0"].attributes["hw.type"], "gpu")
        self.assertEqual(hw["GPU-fake-0"].attributes["hf_eco2ai.measurement.method"], "nvml-energy")
        self.assertTrue(metrics["hw.energy"].data.is_monotonic)
        steps = metrics["hf_eco2ai.training.steps"].data.data_points[0]
        self.assertEqual(steps.value, 8)
        self.assertEqual(steps.attributes["hf_eco2ai.framework"], "transformers")
        samples = metrics["hf_eco2ai.training.samples"].data.data_points[0]
        self.assertEqual(samples.value, 64)
        power = {p.attributes["hw.id"]: p.value for p in metrics["hw.power"].data.data_points}
        self.assertEqual(power["GPU-fake-0"], 200.0)
        ci = metrics["hf_eco2ai.carbon_intensity"].data.data_points[0]
        self.assertEqual(ci.value, 100.0)
        self.assertEqual(ci.attributes["hf_eco2ai.grid.source"], "config")

    def test_efficiency_gauge_agrees_with_the_run_span_after_the_run(self) -> None:
        """Would catch: the J/sample gauge still growing with energy drawn after the run ended,
        so it disagrees with the run's span, report and summary."""
        self.trainer(epochs=1).train()
        import time

        time.sleep(3 * self.config.sample_interval)  # the devices keep drawing power
        (run,) = self.spans_by_name()["transformers.trainer.train"]
        metrics = {m.name: m for m in self.get_sorted_metrics()}
        (point,) = metrics["hf_eco2ai.training.energy_per_sample"].data.data_points
        self.assertAlmostEqual(
            point.value, run.attributes["hf_eco2ai.energy_per_sample.joules"], places=9
        )

    # ------------------------------------------------------------------ lifecycle
    def test_uninstrument_unwraps_stops_sampler_and_silences_callbacks(self) -> None:
        from transformers import Trainer

        session = active_session()
        self.assertIsNotNone(session)
        self.assertTrue(session.monitor.running)
        # wrapt's wrappers: transformers 4.x's own decorators also set __wrapped__
        self.assertIsInstance(Trainer.__dict__["train"], wrapt.FunctionWrapper)
        built_while_instrumented = self.trainer(epochs=1)
        self.instrumentor.uninstrument()
        self.assertIsNone(active_session())
        self.assertFalse(session.monitor.running)
        self.assertNotIsInstance(Trainer.__dict__["train"], wrapt.FunctionWrapper)
        self.memory_metrics_reader.get_metrics_data()  # drain
        self.memory_exporter.clear()
        built_while_instrumented.train()  # measures nothing any more
        self.assertEqual(list(self.get_finished_spans()), [])
        data = self.memory_metrics_reader.get_metrics_data()
        points = [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in m.data.data_points
        ]
        self.assertEqual(points, [])
        # instrument again works
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=self.config,
        )
        self.assertTrue(active_session().monitor.running)
        built_while_instrumented.train()
        self.assertEqual(len(self.run_spans()), 1)

    def test_double_instrument_warns(self) -> None:
        with self.assertLogs("opentelemetry.instrumentation.instrumentor", level="WARNING"):
            self.instrumentor.instrument()


def test_bad_env_fails_at_instrument(monkeypatch: pytest.MonkeyPatch) -> None:
    from hf_eco2ai.config import ConfigError

    monkeypatch.setenv("OTEL_PYTHON_HF_ECO2AI_PUE", "0.5")
    instrumentor = HFEco2AIInstrumentor()
    with pytest.raises(ConfigError, match="OTEL_PYTHON_HF_ECO2AI_PUE"):
        instrumentor.instrument()
    assert active_session() is None


def test_explicit_callback_without_instrumentor(fake_devices: None, tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cb = Eco2AICallback(CarbonConfig(sample_interval=0.05), tracer_provider=provider)
    trainer = make_trainer(str(tmp_path), train_size=32, eval_size=8, epochs=1, callbacks=[cb])
    trainer.train()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("transformers.trainer.train") == 1
    assert names.count("transformers.trainer.evaluate") == 1
    assert cb.last_summary is not None and "run used" in cb.last_summary
    assert monitor_module.shared_monitor() is None  # released at the end of the run
    logged = [h for h in trainer.state.log_history if "hf_eco2ai/energy_kwh" in h]
    assert logged == []  # without the instrumentor the entries go to callbacks, not history
    # the report is under the Trainer's own output directory
    assert len(list((tmp_path / "hf-eco2ai").glob("*/report.json"))) == 1
