"""Hugging Face Transformers adapter: :class:`Eco2AICallback` turns Trainer events into run calls.

Use it explicitly::

    from hf_eco2ai import Eco2AICallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[Eco2AICallback()])

or let :class:`~hf_eco2ai.HFEco2AIInstrumentor` measure every ``Trainer`` (it attaches a callback
of its own when ``train()``, ``evaluate()`` or ``predict()`` is called, without adding it to the
Trainer's callback list). Either way the run, each epoch and each evaluation become spans
carrying their own energy and CO2, the Trainer's log records gain ``hf_eco2ai/*`` entries (so
``report_to`` integrations receive them), and one summary line is logged at the end. Reports go
to ``<args.output_dir>/hf-eco2ai/`` unless ``output_dir`` is configured.

The per-step work is a few integer additions; no sensor, file or network access happens in a
callback (the sampler thread does that).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.run import Run, batch_size_and_tokens, parameter_count
from hf_eco2ai.telemetry import attributes as A
from hf_eco2ai.telemetry.spans import as_attribute_value

_LOG = logging.getLogger(__name__)

FRAMEWORK = "transformers"
SPAN_PREFIX = "transformers.trainer"
LOG_PREFIX = "hf_eco2ai/"

__all__ = ["FRAMEWORK", "LOG_PREFIX", "SPAN_PREFIX", "Eco2AICallback", "batch_size_and_tokens"]


def _tokens_seen_enabled(args: TrainingArguments) -> bool:
    value = getattr(args, "include_num_input_tokens_seen", False)
    return bool(value) and value != "no"


def trainer_rank_facts(args: Any) -> dict[str, int | None]:
    """Rank facts the Trainer knows (``process_index``, ``local_process_index``, ``world_size``)."""
    facts: dict[str, int | None] = {}
    for key, attr in (
        ("rank", "process_index"),
        ("local_rank", "local_process_index"),
        ("world_size", "world_size"),
    ):
        try:
            value = getattr(args, attr, None)
        except Exception:
            value = None
        facts[key] = value if isinstance(value, int) else None
    return facts


PAIRED_TRAINERS = frozenset({"DPOTrainer", "RewardTrainer", "CPOTrainer", "ORPOTrainer"})
"""TRL trainers whose batches stack the chosen and the rejected sequence of each preference
pair: two rows of ``input_ids`` per dataset example."""


def rows_per_sample(trainer: Any) -> int:
    """Rows of ``input_ids`` per dataset example in ``trainer``'s batches (2 for TRL's preference
    trainers, whose batches stack chosen and rejected sequences; else 1).

    >>> rows_per_sample(object())
    1
    """
    names = {cls.__name__ for cls in type(trainer).__mro__}
    return 2 if names & PAIRED_TRAINERS else 1


def _end_abandoned(run: Run) -> None:
    """The callback that began ``run`` was garbage-collected with the run still open."""
    try:
        if run.running:
            run.end_at_last_activity(RuntimeError("training left train() without ending"))
    except Exception:
        _LOG.debug("hf-eco2ai: could not end an abandoned run", exc_info=True)


class Eco2AICallback(TrainerCallback):
    """A ``TrainerCallback`` that turns a Trainer run into energy-carrying spans and metrics.

    Args:
        config: settings; defaults to :meth:`CarbonConfig.from_env`.
        tracer_provider: where this callback's spans go (default: the instrumentor's, else the
            global provider).
        meter_provider: where its metrics go (default: the instrumentor's, else the global one).
        **overrides: ``CarbonConfig`` fields, applied on top of ``config``/env
            (e.g. ``Eco2AICallback(country="FR")``).

    An explicit callback's settings (output directory, project name, budgets, step spans)
    apply to its runs even while the instrumentor is active; the measurement itself (sampler,
    devices, carbon intensity) is shared with the instrumentor.

    Example:
        >>> cb = Eco2AICallback(country="FR")
        >>> cb.config.country
        'FR'
    """

    def __init__(
        self,
        config: CarbonConfig | None = None,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        **overrides: Any,
    ) -> None:
        base = config if config is not None else CarbonConfig.from_env()
        self.config = base.replace(**overrides) if overrides else base
        self.injected = False
        """True for the callback the instrumentor attaches (it measures only while instrumented)."""
        self.run: Run | None = None
        self.last_summary: str | None = None
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._samples_per_step = 0
        self._pending_samples = 0
        self._pending_tokens = 0
        self._tokens_seen = 0
        self._use_tokens_seen = False
        self._standalone = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.rows_per_sample = 1
        """Rows of ``input_ids`` per dataset example (2 for TRL's preference trainers)."""

    # ------------------------------------------------------------------ lifecycle
    def _start(
        self,
        args: Any,
        attrs: dict[str, Any],
        *,
        total_steps: int = 0,
        name: str | None = None,
    ) -> Run | None:
        previous = self.run
        if previous is not None and previous.running:  # training left the last run unended
            previous.end_at_last_activity(
                RuntimeError("training restarted before the previous run ended")
            )
        self._detach_finalizer()
        run = Run.start(
            FRAMEWORK,
            SPAN_PREFIX,
            config=self.config,
            attrs=attrs,
            injected=self.injected,
            rank_facts=trainer_rank_facts(args),
            total_steps=total_steps,
            name=name,
            framework_dir=getattr(args, "output_dir", None),
            tracer_provider=self._tracer_provider,
            meter_provider=self._meter_provider,
        )
        self.run = run
        if run is not None:
            self._finalizer = weakref.finalize(self, _end_abandoned, run)
        return run

    def _detach_finalizer(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Begin the run (the run span) with the Trainer facts."""
        try:
            self._standalone = False
            world = int(getattr(args, "world_size", 1) or 1)
            gas = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
            bs = int(getattr(args, "per_device_train_batch_size", 0) or 0)
            self._samples_per_step = bs * gas
            self._use_tokens_seen = _tokens_seen_enabled(args)
            self._tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            self._pending_samples = self._pending_tokens = 0
            max_steps = int(getattr(state, "max_steps", 0) or 0)
            attrs: dict[str, Any] = {
                A.FRAMEWORK: FRAMEWORK,
                A.PER_DEVICE_BATCH_SIZE: bs,
                A.GRADIENT_ACCUMULATION_STEPS: gas,
                A.WORLD_SIZE: world,
                A.MAX_STEPS: max_steps,
                A.NUM_TRAIN_EPOCHS: float(getattr(args, "num_train_epochs", 0) or 0),
            }
            attrs.update(self._model_attributes(kwargs.get("model")))
            self._start(args, attrs, total_steps=max_steps)
        except Exception:
            _LOG.warning("hf-eco2ai: could not start run telemetry", exc_info=True)

    @staticmethod
    def _model_attributes(model: Any) -> dict[str, Any]:
        if model is None:
            return {}
        attrs: dict[str, Any] = {A.MODEL_CLASS: type(model).__name__}
        count = parameter_count(model)
        if count is not None:
            attrs[A.MODEL_PARAMETERS] = count
        return attrs

    @staticmethod
    def _state_attributes(state: TrainerState | None) -> dict[str, Any]:
        if state is None:
            return {}
        return {
            A.GLOBAL_STEP: int(state.global_step),
            A.EPOCH: float(state.epoch or 0.0),
        }

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """End the run: job totals (distributed), spans, report, summary."""
        run = self.run
        if run is None or not run.running:
            return
        try:
            if run.finish(self._state_attributes(state)) is not None:
                self.last_summary = run.last_summary
        except Exception:
            _LOG.warning("hf-eco2ai: could not end run telemetry", exc_info=True)
        finally:
            self._detach_finalizer()

    def fail(self, error: BaseException, state: TrainerState | None = None) -> None:
        """End the run and every open span with status ERROR (training raised)."""
        run = self.run
        if run is None or not run.running:
            return
        try:
            if run.fail(error, self._state_attributes(state)) is not None:
                self.last_summary = run.last_summary
        except Exception:
            _LOG.warning("hf-eco2ai: could not end run telemetry", exc_info=True)
        finally:
            self._detach_finalizer()

    def left_training(self, state: TrainerState | None = None) -> None:
        """``train()`` returned or raised: end a run that is still open at its last event."""
        run = self.run
        if run is not None and run.running and not self._standalone:
            run.end_at_last_activity(RuntimeError("train() returned without ending the run"))
            self._detach_finalizer()

    # ------------------------------------------------------------------ epochs
    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open an epoch window."""
        if self.run is not None and self.run.running:
            self.run.begin_epoch(int(state.epoch or 0))

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """End the epoch window."""
        if self.run is not None:
            self.run.end_epoch({A.GLOBAL_STEP: int(state.global_step)})

    # ------------------------------------------------------------------ steps (hot path)
    def count_batch(self, inputs: Any) -> None:
        """Count one micro-batch's samples and tokens (called by the instrumentor)."""
        samples, tokens = batch_size_and_tokens(inputs)
        self._pending_samples += samples // self.rows_per_sample
        self._pending_tokens += tokens

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open a sampled step span (only every ``step_span_every`` steps)."""
        run = self.run
        if run is not None and run.step_every:
            run.begin_step(state.global_step + 1)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Count the step's samples and tokens (O(1)); stop training when over budget."""
        run = self.run
        if run is None:
            return
        samples = self._pending_samples or self._samples_per_step
        tokens = self._pending_tokens
        if not tokens and self._use_tokens_seen:
            seen = state.num_input_tokens_seen
            tokens, self._tokens_seen = seen - self._tokens_seen, seen
        self._pending_samples = self._pending_tokens = 0
        if run.step(state.global_step, samples, tokens):
            control.should_training_stop = True

    # ------------------------------------------------------------------ evaluation
    def begin_evaluate(self, trainer: Any = None, kind: str = "evaluate") -> bool:
        """Open an evaluation window (called by the instrumentor before ``evaluate()`` /
        ``predict()``). Outside training, the call is measured as a run of its own."""
        run = self.run
        if run is not None and run.running:
            return run.begin_evaluate()
        if trainer is None:
            return False
        attrs: dict[str, Any] = {A.FRAMEWORK: FRAMEWORK}
        attrs.update(self._model_attributes(getattr(trainer, "model", None)))
        run = self._start(getattr(trainer, "args", None), attrs, name=f"{SPAN_PREFIX}.{kind}")
        self._standalone = run is not None
        return run is not None

    def end_evaluate(self, error: BaseException | None = None) -> None:
        """End the evaluation window (and a stand-alone evaluation's run)."""
        run = self.run
        if run is None:
            return
        if self._standalone:
            self._standalone = False
            if error is None:
                run.finish({})
            else:
                run.fail(error)
            self.last_summary = run.last_summary
            self._detach_finalizer()
            return
        run.end_evaluate({}, error)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open the evaluation window on the first batch when nobody opened it."""
        run = self.run
        if run is not None and run.running and not run.evaluating and not self._standalone:
            run.begin_evaluate()

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """End the evaluation window with the evaluation metrics as attributes."""
        run = self.run
        if run is None or not run.evaluating:
            return
        attrs: dict[str, Any] = {A.GLOBAL_STEP: int(state.global_step)}
        for key, value in (metrics or {}).items():
            v = as_attribute_value(value)
            if v is not None:
                attrs[A.eval_metric(key)] = v
        run.end_evaluate(attrs)

    # ------------------------------------------------------------------ logs
    def log_entries(self) -> dict[str, float]:
        """The ``hf_eco2ai/*`` entries for a Trainer log record (O(1))."""
        run = self.run
        if run is None or not run.running or self._standalone:
            return {}
        window = run.window()
        if window is None:
            return {}
        entries = {
            LOG_PREFIX + "energy_kwh": window.energy_j / 3.6e6,
            LOG_PREFIX + "emissions_g": window.emissions_g,
            LOG_PREFIX + "power_w": run.session.monitor.snapshot().power_w,
        }
        if run.counters.run_samples:
            entries[LOG_PREFIX + "energy_per_sample_j"] = window.energy_j / run.counters.run_samples
        return entries

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Add energy/CO2 to the log record (when the instrumentor has not already)."""
        if logs is None or LOG_PREFIX + "energy_kwh" in logs:
            return
        try:
            logs.update(self.log_entries())
        except Exception:
            _LOG.debug("hf-eco2ai: could not add log entries", exc_info=True)
