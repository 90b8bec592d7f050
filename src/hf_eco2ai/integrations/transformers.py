"""Hugging Face Transformers integration: :class:`Eco2AICallback` and the Trainer patches.

Use it explicitly::

    from hf_eco2ai import Eco2AICallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[Eco2AICallback()])

or let :class:`~hf_eco2ai.HFEco2AIInstrumentor` inject it into every ``Trainer``. Either way the
run, each epoch and each evaluation become spans carrying their own energy and CO2, the
Trainer's log records gain ``hf_eco2ai/*`` entries (so ``report_to`` integrations receive
them), and one summary line is logged at the end.

The per-step work is a few integer additions; no sensor, file or network access happens in a
callback (the sampler thread does that).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_eco2ai._state import active_session
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.distributed import JobAccounting, RankInfo, finish_job, rank_info
from hf_eco2ai.telemetry.session import TelemetrySession
from hf_eco2ai.telemetry.spans import RunTelemetry, as_attribute_value, log_summary

_LOG = logging.getLogger(__name__)

FRAMEWORK = "transformers"
SPAN_PREFIX = "transformers.trainer"
LOG_PREFIX = "hf_eco2ai/"


def _parameter_count(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
        return None


def _tokens_seen_enabled(args: TrainingArguments) -> bool:
    value = getattr(args, "include_num_input_tokens_seen", False)
    return bool(value) and value != "no"


def trainer_rank_facts(args: TrainingArguments) -> dict[str, int | None]:
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


def batch_size_and_tokens(inputs: Any) -> tuple[int, int]:
    """Samples and tokens of one micro-batch, from tensor shapes only (no device sync).

    >>> import torch
    >>> batch_size_and_tokens({"input_ids": torch.zeros(4, 16, dtype=torch.long)})
    (4, 64)
    """
    try:
        ids = inputs.get("input_ids") if hasattr(inputs, "get") else None
        if ids is not None and hasattr(ids, "shape") and len(ids.shape) >= 1:
            return int(ids.shape[0]), int(ids.numel())
        if hasattr(inputs, "values"):
            for value in inputs.values():
                shape = getattr(value, "shape", None)
                if shape is not None and len(shape) >= 1:
                    return int(shape[0]), 0
    except Exception:
        _LOG.debug("hf-eco2ai: could not size a batch", exc_info=True)
    return 0, 0


class Eco2AICallback(TrainerCallback):
    """A ``TrainerCallback`` that turns a Trainer run into energy-carrying spans and metrics.

    Args:
        config: settings; defaults to :meth:`CarbonConfig.from_env`.
        **overrides: ``CarbonConfig`` fields, applied on top of ``config``/env
            (e.g. ``Eco2AICallback(country="FR")``).

    Example:
        >>> cb = Eco2AICallback(country="FR")
        >>> cb.config.country
        'FR'
    """

    def __init__(self, config: CarbonConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else CarbonConfig.from_env()
        self.config = base.replace(**overrides) if overrides else base
        self.run: RunTelemetry | None = None
        self._own_session: TelemetrySession | None = None
        self._samples_per_step = 0
        self._pending_samples = 0
        self._pending_tokens = 0
        self._tokens_seen = 0
        self._use_tokens_seen = False
        self._rank: RankInfo | None = None
        self._stop_requested = False
        self._job: JobAccounting | None = None
        self.last_summary: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def _session(self, rank: RankInfo) -> TelemetrySession:
        session = active_session()
        if session is not None:
            session.set_rank(rank)
            return session
        self._own_session = TelemetrySession(self.config, rank=rank)
        return self._own_session

    def _release(self) -> None:
        if self._own_session is not None:
            self._own_session.close()
            self._own_session = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open the run span with the Trainer facts."""
        try:
            if self.run is not None and self.run.running:  # a previous run never ended
                self.fail(RuntimeError("training restarted before the previous run ended"))
            self._rank = rank_info(trainer_rank_facts(args))
            self.run = RunTelemetry(self._session(self._rank), FRAMEWORK, SPAN_PREFIX)
            model = kwargs.get("model")
            world = int(getattr(args, "world_size", 1) or 1)
            gas = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
            bs = int(getattr(args, "per_device_train_batch_size", 0) or 0)
            self._samples_per_step = bs * gas
            self._use_tokens_seen = _tokens_seen_enabled(args)
            self._tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            self._pending_samples = self._pending_tokens = 0
            self._stop_requested = False
            attrs: dict[str, Any] = {
                "hf_eco2ai.framework": FRAMEWORK,
                "hf_eco2ai.per_device_batch_size": bs,
                "hf_eco2ai.gradient_accumulation_steps": gas,
                "hf_eco2ai.world_size": world,
                "hf_eco2ai.max_steps": int(getattr(state, "max_steps", 0) or 0),
                "hf_eco2ai.num_train_epochs": float(getattr(args, "num_train_epochs", 0) or 0),
            }
            if model is not None:
                attrs["hf_eco2ai.model.class"] = type(model).__name__
                count = _parameter_count(model)
                if count is not None:
                    attrs["hf_eco2ai.model.parameters"] = count
            self.run.begin_run(attrs, total_steps=int(getattr(state, "max_steps", 0) or 0))
            self._job = JobAccounting.begin(self._rank, FRAMEWORK)
        except Exception:
            _LOG.warning("hf-eco2ai: could not start run telemetry", exc_info=True)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Gather job totals (distributed), end the run span, log the summary."""
        job, self._job = self._job, None
        if self.run is not None and self._rank is not None:
            finish_job(job, self.run, self._rank, FRAMEWORK)
        self._finish(state, None)

    def fail(self, error: BaseException, state: TrainerState | None = None) -> None:
        """End every open span with status ERROR (called by the instrumentor's train wrapper)."""
        self._finish(state, error)

    def _finish(self, state: TrainerState | None, error: BaseException | None) -> None:
        run = self.run
        if run is None or not run.running:
            return
        try:
            attrs: dict[str, Any] = {}
            if state is not None:
                attrs["hf_eco2ai.global_step"] = int(state.global_step)
                attrs["hf_eco2ai.epoch"] = float(state.epoch or 0.0)
            window = run.end_run(attrs, error)
            if window is not None:
                self.last_summary = log_summary(
                    FRAMEWORK, window, run.counters.run_samples, run.counters.run_tokens
                )
        except Exception:
            _LOG.warning("hf-eco2ai: could not end run telemetry", exc_info=True)
        finally:
            self._release()

    # ------------------------------------------------------------------ epochs
    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open an epoch span."""
        if self.run is not None and self.run.running:
            self.run.begin_epoch(int(state.epoch or 0))

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """End the epoch span."""
        if self.run is not None:
            self.run.end_epoch({"hf_eco2ai.global_step": int(state.global_step)})

    # ------------------------------------------------------------------ steps (hot path)
    def count_batch(self, inputs: Any) -> None:
        """Count one micro-batch's samples and tokens (called by the instrumentor)."""
        samples, tokens = batch_size_and_tokens(inputs)
        self._pending_samples += samples
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
        """Count the step's samples and tokens (O(1))."""
        run = self.run
        if run is None:
            return
        samples = self._pending_samples or self._samples_per_step
        tokens = self._pending_tokens
        if not tokens and self._use_tokens_seen:
            seen = state.num_input_tokens_seen
            tokens, self._tokens_seen = seen - self._tokens_seen, seen
        self._pending_samples = self._pending_tokens = 0
        run.step(state.global_step, samples, tokens)
        if run.projector.should_stop and not self._stop_requested:
            self._budget_stop(control)

    def _budget_stop(self, control: TrainerControl) -> None:
        """A budget with ``budget_action='stop'`` was exceeded: stop gracefully (single rank)."""
        self._stop_requested = True
        rank = self._rank
        if rank is not None and rank.distributed:
            # one rank leaving the loop alone would hang the others in their next collective
            _LOG.warning(
                "hf-eco2ai: budget exceeded on rank %d of %d; not stopping a multi-rank job "
                "from one rank (the ranks would desynchronise)",
                rank.rank,
                rank.world_size,
            )
            return
        control.should_training_stop = True

    # ------------------------------------------------------------------ evaluation
    def begin_evaluate(self) -> bool:
        """Open an evaluation span (called by the instrumentor before ``Trainer.evaluate``)."""
        if self.run is None:
            return False
        return self.run.begin_evaluate()

    def end_evaluate(self, error: BaseException | None = None) -> None:
        """End the evaluation span if still open."""
        if self.run is not None:
            self.run.end_evaluate({}, error)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open the evaluation span on the first batch when nobody opened it."""
        run = self.run
        if run is not None and run.running and not run.evaluating:
            run.begin_evaluate()

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """End the evaluation span with the evaluation metrics as attributes."""
        run = self.run
        if run is None or not run.evaluating:
            return
        attrs: dict[str, Any] = {"hf_eco2ai.global_step": int(state.global_step)}
        for key, value in (metrics or {}).items():
            v = as_attribute_value(value)
            if v is not None:
                attrs[f"hf_eco2ai.eval.{key}"] = v
        run.end_evaluate(attrs)

    # ------------------------------------------------------------------ logs
    def log_entries(self) -> dict[str, float]:
        """The ``hf_eco2ai/*`` entries for a Trainer log record (O(1))."""
        run = self.run
        if run is None or not run.running:
            return {}
        window = run.run_window()
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
