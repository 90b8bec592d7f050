"""The Lightning callback in both namespaces: injection, spans, attributes, counters, errors.

Every test runs twice, once for ``lightning.pytorch`` and once for ``pytorch_lightning`` (two
separate copies of Lightning whose ``Callback`` classes are unrelated), on a tiny module whose
batches are ``{"input_ids": (8, 16), "labels": (8,)}``: 4 training batches and 2 validation
batches per epoch, one sanity-check validation batch.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from opentelemetry.test.test_base import TestBase
from opentelemetry.trace import StatusCode
from torch.utils.data import DataLoader, Dataset

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.integrations import lightning_callback as integration
from hf_eco2ai.lightning import (
    Eco2AILightningCallback,
    batch_size_and_tokens,
    callback_class,
    lightning_callbacks_factory,
    pytorch_lightning_callbacks_factory,
    resolve_namespace,
)
from hf_eco2ai.run import Run
from tests.conftest import fake_monitor

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec")

BATCH, SEQ, TRAIN_BATCHES, VAL_BATCHES = 8, 16, 4, 2

FIT, EPOCH, VALIDATION, STEP = (
    "lightning.trainer.fit",
    "lightning.trainer.epoch",
    "lightning.trainer.validation",
    "lightning.trainer.step",
)


class Boom(RuntimeError):
    pass


class Tokens(Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(i)
        return {
            "input_ids": torch.randint(0, 50, (SEQ,), generator=gen),
            "labels": torch.tensor(i % 2),
        }


def make_module(ns: str, *, fail_at: int | None = None, callbacks: list[Any] | None = None) -> Any:
    L = importlib.import_module(ns)

    class Tiny(L.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.EmbeddingBag(50, 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.head(self.emb(batch["input_ids"]))

        def training_step(self, batch: dict[str, torch.Tensor], idx: int) -> torch.Tensor:
            if fail_at is not None and self.global_step == fail_at:
                raise Boom("injected failure")
            return torch.nn.functional.cross_entropy(self(batch), batch["labels"])

        def validation_step(self, batch: dict[str, torch.Tensor], idx: int) -> None:
            self.log("val_loss", torch.nn.functional.cross_entropy(self(batch), batch["labels"]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def configure_callbacks(self) -> list[Any]:
            return callbacks or []

    return Tiny()


def make_trainer(ns: str, **kwargs: Any) -> Any:
    L = importlib.import_module(ns)
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "limit_train_batches": TRAIN_BATCHES,
        "limit_val_batches": VAL_BATCHES,
        "num_sanity_val_steps": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    settings.update(kwargs)
    return L.Trainer(**settings)


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    return DataLoader(Tokens(), batch_size=BATCH), DataLoader(Tokens(), batch_size=BATCH)


def ours(trainer: Any) -> list[Eco2AILightningCallback]:
    return [cb for cb in trainer.callbacks if isinstance(cb, Eco2AILightningCallback)]


@pytest.fixture(autouse=True)
def _quiet_lightning() -> Iterator[None]:
    names = ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


class _LightningCases(TestBase):  # type: ignore[misc]
    """Shared cases; subclasses set ``NS``."""

    __test__ = False
    NS = ""

    def setUp(self) -> None:
        super().setUp()
        monitor_module.set_monitor_factory(fake_monitor)
        self.config = CarbonConfig(sample_interval=0.05, write_report=False)
        self.instrumentor = HFEco2AIInstrumentor()
        self.instrument(self.config)

    def instrument(self, config: CarbonConfig) -> None:
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, config=config
        )

    def tearDown(self) -> None:
        self.instrumentor.uninstrument()
        monitor_module.set_monitor_factory(None)
        super().tearDown()

    def fit(self, trainer: Any, module: Any = None) -> Any:
        train, val = loaders()
        trainer.fit(module if module is not None else make_module(self.NS), train, val)
        return trainer

    def spans(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for span in self.get_finished_spans():
            out.setdefault(span.name, []).append(span)
        return out

    # ------------------------------------------------------------------ classes
    def test_class_belongs_to_the_namespace(self) -> None:
        L = importlib.import_module(self.NS)
        cb = Eco2AILightningCallback(namespace=self.NS)
        self.assertIsInstance(cb, L.Callback)
        self.assertIsInstance(cb, Eco2AILightningCallback)
        self.assertIs(type(cb), callback_class(self.NS))
        self.assertEqual(cb.namespace, self.NS)
        other = "pytorch_lightning" if self.NS == "lightning.pytorch" else "lightning.pytorch"
        self.assertNotIsInstance(cb, importlib.import_module(other).Callback)
        with self.assertRaises(ValueError):
            callback_class(self.NS)(namespace=other)
        clone = pickle.loads(pickle.dumps(cb))  # ddp_spawn pickles the Trainer's callbacks
        self.assertIs(type(clone), type(cb))
        self.assertEqual(clone.config, cb.config)

    # ------------------------------------------------------------------ injection
    def test_injected_exactly_once_through_the_entry_point(self) -> None:
        trainer = make_trainer(self.NS)
        injected = ours(trainer)
        self.assertEqual(len(injected), 1)
        self.assertTrue(injected[0].injected)
        self.assertIs(type(injected[0]), callback_class(self.NS))
        self.fit(trainer)
        self.assertEqual(len(self.spans()[FIT]), 1)

    def test_explicit_callback_wins_over_the_injected_one(self) -> None:
        explicit = Eco2AILightningCallback(self.config, namespace=self.NS)
        trainer = make_trainer(self.NS, callbacks=[explicit])
        self.assertEqual(len(ours(trainer)), 2)  # the factory cannot see the user's callbacks
        self.fit(trainer)
        injected = next(cb for cb in ours(trainer) if cb.injected)
        self.assertTrue(explicit.active)
        self.assertFalse(injected.active)
        self.assertIsNone(injected.run)
        self.assertEqual(len(self.spans()[FIT]), 1)
        self.assertEqual(explicit.run.counters.run_samples, 2 * TRAIN_BATCHES * BATCH)

    def test_two_explicit_callbacks_report_once(self) -> None:
        first = Eco2AILightningCallback(self.config, namespace=self.NS)
        second = Eco2AILightningCallback(self.config, namespace=self.NS)
        with self.assertLogs("hf_eco2ai", level="WARNING") as logs:
            self.fit(make_trainer(self.NS, callbacks=[first, second]))
        self.assertTrue(first.active)
        self.assertFalse(second.active)
        self.assertEqual(len(self.spans()[FIT]), 1)
        self.assertTrue(any("only the first one reports" in line for line in logs.output))

    def test_model_callback_replaces_the_injected_one(self) -> None:
        from_model = Eco2AILightningCallback(self.config, namespace=self.NS)
        trainer = make_trainer(self.NS)
        self.fit(trainer, make_module(self.NS, callbacks=[from_model]))
        self.assertEqual(ours(trainer), [from_model])
        self.assertEqual(len(self.spans()[FIT]), 1)

    def test_uninstrument_factory_returns_nothing(self) -> None:
        self.instrumentor.uninstrument()
        self.assertEqual(lightning_callbacks_factory(), [])
        self.assertEqual(pytorch_lightning_callbacks_factory(), [])
        trainer = make_trainer(self.NS)
        self.assertEqual(ours(trainer), [])
        self.fit(trainer)
        self.assertEqual(list(self.get_finished_spans()), [])
        self.instrument(self.config)
        self.assertEqual(len(ours(make_trainer(self.NS))), 1)

    def test_injected_callback_idle_after_uninstrument(self) -> None:
        trainer = make_trainer(self.NS)  # built while instrumented
        self.instrumentor.uninstrument()
        self.fit(trainer)
        self.assertEqual(list(self.get_finished_spans()), [])
        self.assertIsNone(ours(trainer)[0].run)

    # ------------------------------------------------------------------ spans
    def test_fit_epoch_validation_spans(self) -> None:
        trainer = self.fit(make_trainer(self.NS))
        spans = self.spans()
        (fit,) = spans[FIT]
        epochs = spans[EPOCH]
        validations = spans[VALIDATION]
        self.assertEqual(len(epochs), 2)
        self.assertEqual(len(validations), 3)  # sanity check + one per epoch
        self.assertNotIn(STEP, spans)
        for span in [*epochs, *validations]:
            self.assertEqual(span.kind.name, "INTERNAL")
            self.assertEqual(span.context.trace_id, fit.context.trace_id)
        for span in epochs:
            self.assertEqual(span.parent.span_id, fit.context.span_id)
        sanity = [v for v in validations if v.attributes["hf_eco2ai.sanity_check"]]
        regular = [v for v in validations if not v.attributes["hf_eco2ai.sanity_check"]]
        self.assertEqual(len(sanity), 1)
        self.assertEqual(sanity[0].parent.span_id, fit.context.span_id)
        self.assertNotIn("hf_eco2ai.eval.val_loss", sanity[0].attributes)
        # validation at the end of an epoch runs inside it
        epoch_ids = {e.context.span_id for e in epochs}
        for span in regular:
            self.assertIn(span.parent.span_id, epoch_ids)
            self.assertIn("hf_eco2ai.eval.val_loss", span.attributes)
            self.assertGreater(span.attributes["hf_eco2ai.energy.joules"], 0)
        self.assertEqual([e.attributes["hf_eco2ai.epoch"] for e in epochs], [0, 1])
        self.assertEqual(
            [e.attributes["hf_eco2ai.global_step"] for e in epochs],
            [TRAIN_BATCHES, 2 * TRAIN_BATCHES],
        )
        attrs = fit.attributes
        self.assertEqual(fit.status.status_code, StatusCode.UNSET)
        self.assertGreater(attrs["hf_eco2ai.energy.joules"], 0)
        self.assertGreater(attrs["hf_eco2ai.emissions.grams"], 0)
        self.assertGreater(attrs["hf_eco2ai.energy.gpu.joules"], 0)
        self.assertIn("hf_eco2ai.energy.cpu.joules", attrs)
        self.assertEqual(attrs["hf_eco2ai.energy.method"], "nvml-energy,ram-model,tdp-model")
        self.assertEqual(attrs["hf_eco2ai.framework"], "lightning")
        self.assertEqual(attrs["hf_eco2ai.lightning.namespace"], self.NS)
        self.assertEqual(attrs["hf_eco2ai.lightning.strategy"], type(trainer.strategy).__name__)
        self.assertEqual(attrs["hf_eco2ai.model.class"], "Tiny")
        self.assertEqual(attrs["hf_eco2ai.model.parameters"], 50 * 8 + 8 * 2 + 2)
        self.assertEqual(attrs["hf_eco2ai.max_epochs"], 2)
        self.assertEqual(attrs["hf_eco2ai.global_step"], 2 * TRAIN_BATCHES)
        self.assertEqual(attrs["hf_eco2ai.epoch"], 2)
        self.assertEqual(attrs["hf_eco2ai.training.samples"], 2 * TRAIN_BATCHES * BATCH)
        self.assertEqual(attrs["hf_eco2ai.training.tokens"], 2 * TRAIN_BATCHES * BATCH * SEQ)
        self.assertAlmostEqual(
            attrs["hf_eco2ai.energy_per_sample.joules"],
            attrs["hf_eco2ai.energy.joules"] / (2 * TRAIN_BATCHES * BATCH),
        )
        # identity: rank facts on every span (the test providers' Resource has none)
        for span in self.get_finished_spans():
            self.assertEqual(span.attributes["hf_eco2ai.rank"], 0)
            self.assertEqual(span.attributes["hf_eco2ai.world_size"], 1)
            self.assertIn("host.name", span.attributes)
        # the parts add up to the run within the sampler's resolution
        parts = sum(s.attributes["hf_eco2ai.energy.joules"] for s in epochs + sanity)
        self.assertLessEqual(parts, attrs["hf_eco2ai.energy.joules"] + 1.0)

    def test_counters_and_data_points(self) -> None:
        self.fit(make_trainer(self.NS))
        metrics = {m.name: m for m in self.get_sorted_metrics()}

        def point(name: str) -> Any:
            pts = [
                p
                for p in metrics[name].data.data_points
                if p.attributes.get("hf_eco2ai.framework") == "lightning"
            ]
            self.assertEqual(len(pts), 1)
            return pts[0]

        self.assertEqual(point("hf_eco2ai.training.steps").value, 2 * TRAIN_BATCHES)
        self.assertEqual(point("hf_eco2ai.training.samples").value, 2 * TRAIN_BATCHES * BATCH)
        self.assertEqual(point("hf_eco2ai.training.tokens").value, 2 * TRAIN_BATCHES * BATCH * SEQ)
        self.assertGreaterEqual(point("hf_eco2ai.training.energy_per_sample").value, 0)
        for p in metrics["hw.energy"].data.data_points:
            self.assertEqual(p.attributes["hf_eco2ai.rank"], 0)
            self.assertEqual(p.attributes["hf_eco2ai.local_rank"], 0)
            self.assertIn("host.name", p.attributes)

    def test_gradient_accumulation_counts_optimizer_steps(self) -> None:
        self.fit(make_trainer(self.NS, max_epochs=1, accumulate_grad_batches=2))
        (fit,) = self.spans()[FIT]
        self.assertEqual(fit.attributes["hf_eco2ai.global_step"], TRAIN_BATCHES // 2)
        self.assertEqual(fit.attributes["hf_eco2ai.accumulate_grad_batches"], 2)
        self.assertEqual(fit.attributes["hf_eco2ai.training.samples"], TRAIN_BATCHES * BATCH)
        steps = next(m for m in self.get_sorted_metrics() if m.name == "hf_eco2ai.training.steps")
        self.assertEqual(steps.data.data_points[0].value, TRAIN_BATCHES // 2)

    def test_trailing_micro_batches_are_counted(self) -> None:
        # 3 batches, accumulation 2: the last batch does not end in an optimizer step here
        trainer = make_trainer(
            self.NS, max_epochs=1, limit_train_batches=3, accumulate_grad_batches=2
        )
        self.fit(trainer)
        (fit,) = self.spans()[FIT]
        self.assertEqual(fit.attributes["hf_eco2ai.training.samples"], 3 * BATCH)

    def test_step_spans_sampled(self) -> None:
        self.instrumentor.uninstrument()
        self.instrument(self.config.replace(step_span_every=2))
        self.fit(make_trainer(self.NS, max_epochs=1))
        spans = self.spans()
        steps = spans[STEP]
        self.assertEqual([s.attributes["hf_eco2ai.global_step"] for s in steps], [2, 4])
        (epoch,) = spans[EPOCH]
        for span in steps:
            self.assertEqual(span.parent.span_id, epoch.context.span_id)
            self.assertIn("hf_eco2ai.energy.joules", span.attributes)

    def test_energy_budget_stops_training_gracefully(self) -> None:
        self.instrumentor.uninstrument()
        self.instrument(self.config.replace(energy_budget=1e-6, budget_action="stop"))
        trainer = self.fit(make_trainer(self.NS, max_epochs=2))
        self.assertLess(trainer.global_step, 2 * TRAIN_BATCHES)
        (fit,) = self.spans()[FIT]
        self.assertEqual(fit.status.status_code, StatusCode.UNSET)
        self.assertTrue(fit.attributes["hf_eco2ai.budget.stopped"])
        self.assertIn("hf_eco2ai.projected.energy.joules", fit.attributes)

    def test_summary_logged_once(self) -> None:
        with self.assertLogs("hf_eco2ai", level=logging.INFO) as logs:
            self.fit(make_trainer(self.NS, max_epochs=1))
        lines = [r for r in logs.output if "lightning run used" in r]
        self.assertEqual(len(lines), 1)
        self.assertIn("J/token", lines[0])

    # ------------------------------------------------------------------ errors
    def test_exception_ends_spans_with_error(self) -> None:
        trainer = make_trainer(self.NS)
        with self.assertRaises(Boom):
            self.fit(trainer, make_module(self.NS, fail_at=TRAIN_BATCHES + 1))
        spans = self.spans()
        (fit,) = spans[FIT]
        self.assertEqual(fit.status.status_code, StatusCode.ERROR)
        self.assertEqual(fit.attributes["error.type"], "Boom")
        self.assertEqual(fit.events[0].name, "exception")
        self.assertGreater(fit.attributes["hf_eco2ai.energy.joules"], 0)
        self.assertNotIn("hf_eco2ai.job.energy.joules", fit.attributes)
        epochs = spans[EPOCH]
        self.assertEqual(epochs[0].status.status_code, StatusCode.UNSET)
        self.assertEqual(epochs[1].status.status_code, StatusCode.ERROR)
        self.assertFalse(ours(trainer)[0].run.running)

    def test_telemetry_failure_never_breaks_training(self) -> None:
        trainer = make_trainer(self.NS, max_epochs=1)
        cb = ours(trainer)[0]

        def broken(*args: Any, **kwargs: Any) -> None:
            raise OSError("exporter down")

        with self.assertLogs("hf_eco2ai", level="WARNING") as logs:
            original = Run.begin_epoch
            Run.begin_epoch = broken  # type: ignore[method-assign]
            try:
                self.fit(trainer)
            finally:
                Run.begin_epoch = original  # type: ignore[method-assign]
        self.assertEqual(trainer.global_step, TRAIN_BATCHES)  # trained to the end
        warnings = [r for r in logs.output if "training continues" in r]
        self.assertEqual(len(warnings), 1)  # logged once
        self.assertEqual(len(self.spans()[FIT]), 1)
        self.assertFalse(cb.run.running)

    def test_standalone_validate_makes_no_span(self) -> None:
        trainer = make_trainer(self.NS)
        trainer.validate(make_module(self.NS), loaders()[1], verbose=False)
        self.assertEqual(list(self.get_finished_spans()), [])


class TestLightningPytorch(_LightningCases):
    __test__ = True
    NS = "lightning.pytorch"


class TestPytorchLightning(_LightningCases):
    __test__ = True
    NS = "pytorch_lightning"


# ---------------------------------------------------------------------- without the instrumentor
@pytest.mark.parametrize("ns", ["lightning.pytorch", "pytorch_lightning"])
def test_explicit_callback_without_instrumentor(ns: str, fake_devices: None) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cb = Eco2AILightningCallback(
        CarbonConfig(sample_interval=0.05, write_report=False),
        namespace=ns,
        tracer_provider=provider,
    )
    trainer = make_trainer(ns, max_epochs=1, callbacks=[cb])
    assert ours(trainer) == [cb]  # not instrumented: nothing injected
    train, val = loaders()
    trainer.fit(make_module(ns), train, val)
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count(FIT) == 1
    assert names.count(VALIDATION) == 2
    assert cb.last_summary is not None and "lightning run used" in cb.last_summary
    assert monitor_module.shared_monitor() is None  # released at the end of the run


# ---------------------------------------------------------------------- helpers
def test_resolve_namespace() -> None:
    assert resolve_namespace("lightning") == "lightning.pytorch"
    assert resolve_namespace("pytorch-lightning") == "pytorch_lightning"
    assert resolve_namespace() == "lightning.pytorch"  # both imported here: the modern one
    with pytest.raises(ValueError, match="unknown Lightning namespace"):
        resolve_namespace("keras")


def test_module_getattr_resolves_classes() -> None:
    assert integration.LightningPytorchEco2AICallback is callback_class("lightning.pytorch")
    assert integration.PytorchLightningEco2AICallback is callback_class("pytorch_lightning")
    with pytest.raises(AttributeError):
        integration.NoSuchThing  # noqa: B018


def test_import_does_not_import_lightning() -> None:
    import subprocess
    import sys

    code = (
        "import sys, hf_eco2ai, hf_eco2ai.lightning; "
        "print('lightning.pytorch' in sys.modules, 'pytorch_lightning' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False False"


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ({"input_ids": torch.zeros(4, 16, dtype=torch.long)}, (4, 64)),
        ({"pixels": torch.zeros(5, 3, 8, 8), "y": torch.zeros(5)}, (5, 0)),
        ((torch.zeros(6, 3), torch.zeros(6)), (6, 0)),
        ([[torch.zeros(7, 2)], "meta"], (7, 0)),
        (torch.zeros(3, 2), (3, 0)),
        ({"nested": {"input_ids": torch.zeros(2, 5)}}, (2, 0)),
        ("not a batch", (0, 0)),
        (42, (0, 0)),
        ({}, (0, 0)),
    ],
)
def test_batch_size_and_tokens(batch: Any, expected: tuple[int, int]) -> None:
    assert batch_size_and_tokens(batch) == expected


def test_batch_sizing_failure_is_contained() -> None:
    class Weird(dict):  # type: ignore[type-arg]
        def get(self, key: Any, default: Any = None) -> Any:
            raise RuntimeError("no")

    assert batch_size_and_tokens(Weird(a=1)) == (0, 0)


def test_scalar_metrics() -> None:
    metrics = {"val_loss": torch.tensor(0.5), "acc": 0.75, "vec": torch.zeros(3), "name": None}
    assert integration._scalar_metrics(metrics) == {
        "hf_eco2ai.eval.val_loss": 0.5,
        "hf_eco2ai.eval.acc": 0.75,
    }
    assert integration._scalar_metrics(None) == {}


# ---------------------------------------------------------------------- hooks driven directly
class FakeTrainer:
    """The Trainer attributes the callback reads."""

    def __init__(self, callbacks: list[Any]) -> None:
        self.callbacks = callbacks
        self.global_step = 0
        self.current_epoch = 0
        self.sanity_checking = False
        self.global_rank = self.local_rank = 0
        self.world_size = self.num_devices = 1
        self.callback_metrics: dict[str, Any] = {}


@pytest.fixture
def session_cb(fake_devices: None) -> Iterator[tuple[Any, FakeTrainer]]:
    cb = Eco2AILightningCallback(
        CarbonConfig(sample_interval=0.05, write_report=False), namespace="lightning.pytorch"
    )
    trainer = FakeTrainer([cb])
    cb.setup(trainer, None, "fit")
    yield cb, trainer
    cb.teardown(trainer, None, "fit")


def test_teardown_ends_a_run_left_open(session_cb: tuple[Any, FakeTrainer]) -> None:
    cb, trainer = session_cb
    cb.on_fit_start(trainer, None)
    assert cb.run.running
    cb.teardown(trainer, None, "fit")
    assert not cb.run.running
    assert cb.run.session.closed  # its own session was released
    cb.fail(RuntimeError("late"))  # nothing open: no-op


def test_restarted_fit_ends_the_previous_run_with_error(
    session_cb: tuple[Any, FakeTrainer],
) -> None:
    cb, trainer = session_cb
    cb.on_fit_start(trainer, None)
    first = cb.run
    cb.on_fit_start(trainer, None)
    assert not first.running and cb.run.running and cb.run is not first
    cb.on_fit_end(trainer, None)


def test_inactive_callback_ignores_hooks(session_cb: tuple[Any, FakeTrainer]) -> None:
    cb, trainer = session_cb
    cb.active = False
    cb.on_fit_start(trainer, None)
    cb.on_exception(trainer, None, RuntimeError("x"))
    cb.on_fit_end(trainer, None)
    assert cb.run is None


def test_dedupe_failure_keeps_explicit_active(session_cb: tuple[Any, FakeTrainer]) -> None:
    cb, _ = session_cb

    class NoCallbacks:
        @property
        def callbacks(self) -> list[Any]:
            raise RuntimeError("no")

    cb.setup(NoCallbacks(), None, "fit")
    assert cb.active
    assert "explicit" in repr(cb)


@pytest.mark.parametrize(
    ("method", "hook"),
    [
        ("begin", "on_fit_start"),
        ("begin_epoch", "on_train_epoch_start"),
        ("end_epoch", "on_train_epoch_end"),
        ("begin_step", "on_train_batch_start"),
        ("step", "on_train_batch_end"),
        ("begin_evaluate", "on_validation_start"),
        ("end_evaluate", "on_validation_end"),
        ("finish", "on_fit_end"),
    ],
)
def test_every_hook_contains_telemetry_failures(
    session_cb: tuple[Any, FakeTrainer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    hook: str,
) -> None:
    cb, trainer = session_cb
    cb.config = cb.config.replace(step_span_every=1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("boom")

    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    if hook != "on_fit_start":
        cb.on_fit_start(trainer, None)
        cb.on_train_epoch_start(trainer, None)
        if hook == "on_validation_end":
            cb.on_validation_start(trainer, None)
    monkeypatch.setattr(Run, method, broken)
    with caplog.at_level(logging.DEBUG, logger="hf_eco2ai"):
        if hook == "on_train_batch_start":
            cb.on_train_batch_start(trainer, None, batch, 0)
        elif hook == "on_train_batch_end":
            trainer.global_step = 1
            cb.on_train_batch_end(trainer, None, None, batch, 0)
        else:
            getattr(cb, hook)(trainer, None)
        cb.on_train_batch_end(trainer, None, None, batch, 1)  # still does not raise
    assert any("failed" in r.getMessage() for r in caplog.records)


def test_resolve_namespace_imports_when_none_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for ns in ("lightning.pytorch", "pytorch_lightning"):
        monkeypatch.delitem(sys.modules, ns)
    tried: list[str] = []

    def only_pl(name: str) -> Any:
        tried.append(name)
        if name == "lightning.pytorch":
            raise ImportError(name)
        return object()

    monkeypatch.setattr(integration.importlib, "import_module", only_pl)
    assert resolve_namespace() == "pytorch_lightning"
    assert tried == ["lightning.pytorch", "pytorch_lightning"]

    def nothing(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(integration.importlib, "import_module", nothing)
    with pytest.raises(ImportError, match="needs `lightning` or `pytorch-lightning`"):
        resolve_namespace()


def test_factory_failure_is_contained(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(integration, "active_session", lambda: object())  # no .config
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        assert lightning_callbacks_factory() == []
    assert any("could not create" in r.getMessage() for r in caplog.records)


def test_callback_of_the_other_namespace_warns(caplog: pytest.LogCaptureFixture) -> None:
    import pytorch_lightning as pl

    cb = Eco2AILightningCallback(namespace="lightning.pytorch")
    trainer = FakeTrainer([cb])
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        cb.setup(trainer, None, "fit")  # not a Trainer: nothing to say
        assert not caplog.records
        cb.setup(pl.Trainer(logger=False, enable_progress_bar=False), None, "fit")
    assert any("namespace='pytorch_lightning'" in r.getMessage() for r in caplog.records)
    assert integration.trainer_namespace(make_trainer("lightning.pytorch")) == "lightning.pytorch"


def test_budget_never_stops_one_rank_of_a_job(
    session_cb: tuple[Any, FakeTrainer], caplog: pytest.LogCaptureFixture
) -> None:
    from hf_eco2ai.distributed import RankInfo

    cb, trainer = session_cb
    trainer.should_stop = False
    cb.on_fit_start(trainer, None)
    cb.run.rank = RankInfo(1, 1, 2, 2, "h")
    cb.run.projector.should_stop = True
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        trainer.global_step = 1
        cb.on_train_batch_end(trainer, None, None, {"x": torch.zeros(2)}, 0)
        trainer.global_step = 2
        cb.on_train_batch_end(trainer, None, None, {"x": torch.zeros(2)}, 1)
    assert trainer.should_stop is False
    assert sum("not stopping a multi-rank job" in r.getMessage() for r in caplog.records) == 1
    cb.on_fit_end(trainer, None)


def test_infinite_training_sets_no_total(session_cb: tuple[Any, FakeTrainer]) -> None:
    cb, trainer = session_cb
    trainer.estimated_stepping_batches = float("inf")  # type: ignore[attr-defined]
    cb.on_fit_start(trainer, None)
    cb.on_train_start(trainer, None)
    assert cb.run._total_steps == 0
    trainer.estimated_stepping_batches = 10  # type: ignore[attr-defined]
    cb.on_train_start(trainer, None)
    assert cb.run._total_steps == 10
    cb.on_fit_end(trainer, None)


def test_injected_callback_writes_a_report_only_where_lightning_writes_files(
    tmp_path: Any,
) -> None:
    """Would catch: the instrumentation leaving files where Lightning itself writes none (a
    ``memory://`` root, ``logger=False, enable_checkpointing=False``): Lightning's own tests see
    them as artifacts left behind."""
    from types import SimpleNamespace

    from hf_eco2ai.integrations.lightning_callback import _framework_dir, _run_config

    config = CarbonConfig()
    writes = SimpleNamespace(
        default_root_dir=str(tmp_path), loggers=[object()], checkpoint_callback=None
    )
    silent = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], checkpoint_callback=None)
    remote = SimpleNamespace(
        default_root_dir="memory://x", loggers=[object()], checkpoint_callback=None
    )
    assert _framework_dir(remote) is None
    assert _run_config(config, writes, _framework_dir(writes), True).write_report
    assert not _run_config(config, silent, _framework_dir(silent), True).write_report
    assert not _run_config(config, remote, _framework_dir(remote), True).write_report
    # an explicit callback, or an explicit output_dir, always gets its report
    assert _run_config(config, silent, _framework_dir(silent), False).write_report
    explicit_dir = config.replace(output_dir=str(tmp_path / "r"))
    assert _run_config(explicit_dir, remote, None, True).write_report
