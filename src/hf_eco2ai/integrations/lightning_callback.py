"""PyTorch Lightning integration: one callback implementation, one class per Lightning namespace.

``lightning.pytorch`` and ``pytorch_lightning`` are separate copies of the same code: a callback
of one is not a ``Callback`` of the other. :class:`Eco2AILightningCallback` holds the whole
implementation and depends on neither; :func:`callback_class` builds, on first use and only if
that namespace is importable, the subclass that also derives from the namespace's ``Callback``:

* ``LightningPytorchEco2AICallback`` (``lightning.pytorch.Callback``),
* ``PytorchLightningEco2AICallback`` (``pytorch_lightning.Callback``).

Constructing ``Eco2AILightningCallback(...)`` returns an instance of the right one:
``namespace="lightning.pytorch"`` / ``"pytorch_lightning"`` when given, else the one that is
imported (``lightning.pytorch`` when both are). Importing this module imports no Lightning.

Use it explicitly::

    from hf_eco2ai.lightning import Eco2AILightningCallback
    trainer = Trainer(callbacks=[Eco2AILightningCallback(country="FR")])

or let :class:`~hf_eco2ai.HFEco2AIInstrumentor` add it to every Trainer: the
``lightning.pytorch.callbacks_factory`` / ``pytorch_lightning.callbacks_factory`` entry points
call :func:`lightning_callbacks_factory` / :func:`pytorch_lightning_callbacks_factory`, which
return ``[]`` when not instrumented. The factory cannot see the Trainer's other callbacks, so
duplicates are resolved at ``setup()``: exactly one of our callbacks per Trainer is active (the
first one the user passed, else the injected one).

Spans: ``lightning.trainer.fit`` (the run), ``lightning.trainer.epoch``,
``lightning.trainer.validation`` (sanity-check validation is marked
``hf_eco2ai.sanity_check=true``) and, when ``step_span_every`` > 0, sampled
``lightning.trainer.step``. Per training batch the callback does a few integer operations
(samples from the batch size, tokens from ``input_ids``' shape; no device sync).
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from hf_eco2ai._logging import warn_once
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.run import Run, batch_size_and_tokens, parameter_count
from hf_eco2ai.telemetry import attributes as A
from hf_eco2ai.telemetry.session import active_session
from hf_eco2ai.telemetry.spans import as_attribute_value

__all__ = [
    "NAMESPACES",
    "Eco2AILightningCallback",
    "batch_size_and_tokens",
    "callback_class",
    "lightning_callbacks_factory",
    "pytorch_lightning_callbacks_factory",
    "resolve_namespace",
]

_LOG = logging.getLogger(__name__)

FRAMEWORK = "lightning"
SPAN_PREFIX = "lightning.trainer"
RUN_SPAN = "lightning.trainer.fit"
VALIDATION_SPAN = "lightning.trainer.validation"
_MAX_EVAL_METRICS = 32

NAMESPACES: Mapping[str, str] = {
    "lightning.pytorch": "LightningPytorchEco2AICallback",
    "pytorch_lightning": "PytorchLightningEco2AICallback",
}
"""Lightning namespace → name of its callback class in this module."""

_ALIASES = {
    "lightning.pytorch": "lightning.pytorch",
    "lightning": "lightning.pytorch",
    "pytorch_lightning": "pytorch_lightning",
    "pytorch-lightning": "pytorch_lightning",
    "pl": "pytorch_lightning",
}

_CLASSES: dict[str, type[Eco2AILightningCallback]] = {}


# --------------------------------------------------------------------------- namespaces
def resolve_namespace(namespace: str | None = None) -> str:
    """The Lightning namespace to build a callback for.

    ``namespace`` may be ``"lightning.pytorch"`` (or ``"lightning"``) or ``"pytorch_lightning"``
    (or ``"pl"``). Without it: the namespace already imported (``lightning.pytorch`` when both
    are), else the first importable one.

    Example:
        >>> resolve_namespace("pl")
        'pytorch_lightning'
    """
    if namespace is not None:
        try:
            return _ALIASES[namespace]
        except KeyError:
            raise ValueError(
                f"unknown Lightning namespace {namespace!r}; use 'lightning.pytorch' or "
                "'pytorch_lightning'"
            ) from None
    imported = [ns for ns in NAMESPACES if ns in sys.modules]
    if imported:
        if len(imported) > 1:
            _LOG.debug(
                "hf-eco2ai: both lightning.pytorch and pytorch_lightning are imported; using "
                "lightning.pytorch (pass namespace='pytorch_lightning' for the other)"
            )
        return imported[0]
    for ns in NAMESPACES:
        try:
            importlib.import_module(ns)
        except ImportError:
            continue
        return ns
    raise ImportError(
        "hf-eco2ai's Lightning callback needs `lightning` or `pytorch-lightning` installed"
    )


def callback_class(namespace: str | None = None) -> type[Eco2AILightningCallback]:
    """The callback class of ``namespace`` (built once, on first use; imports that namespace).

    Example:
        >>> cls = callback_class("lightning.pytorch")
        >>> import lightning.pytorch as L
        >>> issubclass(cls, L.Callback), issubclass(cls, Eco2AILightningCallback)
        (True, True)
    """
    ns = resolve_namespace(namespace)
    cls = _CLASSES.get(ns)
    if cls is None:
        module = importlib.import_module(ns)
        name = NAMESPACES[ns]
        cls = type(
            name,
            (Eco2AILightningCallback, module.Callback),
            {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": f"{Eco2AILightningCallback.__doc__}\n    (``{ns}`` namespace.)",
                "namespace": ns,
            },
        )
        _CLASSES[ns] = cls
    return cls


def __getattr__(name: str) -> Any:
    # The per-namespace classes resolve by name (pickle, e.g. ddp_spawn, looks them up here).
    for ns, class_name in NAMESPACES.items():
        if name == class_name:
            return callback_class(ns)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trainer_namespace(trainer: Any) -> str | None:
    """The Lightning namespace ``trainer``'s class comes from (subclasses included), if any.

    >>> trainer_namespace(object()) is None
    True
    """
    for cls in type(trainer).__mro__:
        module = getattr(cls, "__module__", "") or ""
        for ns in NAMESPACES:
            if module == ns or module.startswith(ns + "."):
                return ns
    return None


def lightning_rank_facts(trainer: Any) -> dict[str, int | None]:
    """Rank facts the Lightning Trainer knows (``global_rank``, ``local_rank``, …)."""
    facts: dict[str, int | None] = {}
    for key, attr in (
        ("rank", "global_rank"),
        ("local_rank", "local_rank"),
        ("world_size", "world_size"),
        ("local_world_size", "num_devices"),
    ):
        try:
            value = getattr(trainer, attr, None)
        except Exception:
            value = None
        facts[key] = value if isinstance(value, int) and not isinstance(value, bool) else None
    return facts


# --------------------------------------------------------------------------- the callback
class Eco2AILightningCallback:
    """A Lightning callback that turns ``trainer.fit`` into energy-carrying spans and metrics.

    The shared implementation of both namespaces' callbacks; constructing it returns an
    instance of the class of the Trainer's namespace (see :func:`resolve_namespace`).

    Args:
        config: settings; defaults to :meth:`CarbonConfig.from_env`.
        namespace: ``"lightning.pytorch"`` or ``"pytorch_lightning"``; default: detected.
        **overrides: ``CarbonConfig`` fields applied on top (e.g. ``country="FR"``).

    Example:
        >>> import lightning.pytorch as L
        >>> cb = Eco2AILightningCallback(country="FR")
        >>> isinstance(cb, L.Callback), cb.namespace, cb.config.country
        (True, 'lightning.pytorch', 'FR')
    """

    namespace: str = ""
    """The Lightning namespace of this class (set on the per-namespace subclasses)."""

    def __new__(
        cls,
        config: CarbonConfig | None = None,
        *,
        namespace: str | None = None,
        **overrides: Any,
    ) -> Eco2AILightningCallback:
        """Pick the per-namespace class when called on the shared implementation."""
        if not cls.namespace:
            cls = callback_class(namespace)
        return object.__new__(cls)

    def __init__(
        self,
        config: CarbonConfig | None = None,
        *,
        namespace: str | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        **overrides: Any,
    ) -> None:
        if namespace is not None and resolve_namespace(namespace) != self.namespace:
            raise ValueError(f"{type(self).__name__} is the {self.namespace} callback")
        base = config if config is not None else CarbonConfig.from_env()
        self.config = base.replace(**overrides) if overrides else base
        self.injected = False
        """True for instances made by the ``callbacks_factory`` entry point."""
        self.active = True
        """False when another of our callbacks on the same Trainer does the work."""
        self.run: Run | None = None
        self.last_summary: str | None = None
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._last_step = 0
        self._pending_batches = 0
        self._pending_samples = 0
        self._pending_tokens = 0
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        # picklable before fit (ddp_spawn pickles the Trainer): drop live telemetry
        state = dict(self.__dict__)
        state.update(run=None, _tracer_provider=None, _meter_provider=None)
        return state

    def __repr__(self) -> str:
        how = "injected" if self.injected else "explicit"
        return f"<{type(self).__name__} {how} active={self.active}>"

    # ------------------------------------------------------------------ helpers
    def _contained(self, what: str) -> None:
        """Log a telemetry failure (warning the first time, debug after)."""
        if self._warned:
            _LOG.debug("hf-eco2ai: %s failed", what, exc_info=True)
        else:
            self._warned = True
            _LOG.warning("hf-eco2ai: %s failed; training continues", what, exc_info=True)

    # ------------------------------------------------------------------ dedupe
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Decide which of our callbacks on this Trainer is active (exactly one)."""
        trainer_ns = trainer_namespace(trainer)
        if trainer_ns is not None and trainer_ns != self.namespace:
            _LOG.warning(
                "hf-eco2ai: a %s callback on a %s Trainer; it works through the hooks' names, "
                "but pass Eco2AILightningCallback(namespace=%r) to match",
                self.namespace,
                trainer_ns,
                trainer_ns,
            )
        try:
            ours = [cb for cb in trainer.callbacks if isinstance(cb, Eco2AILightningCallback)]
            explicit = [cb for cb in ours if not cb.injected]
            chosen = explicit[0] if explicit else (ours[0] if ours else self)
            self.active = chosen is self
            if self.active and len(explicit) > 1:
                _LOG.warning(
                    "hf-eco2ai: %d Eco2AILightningCallback instances passed to one Trainer; "
                    "only the first one reports",
                    len(explicit),
                )
        except Exception:
            self.active = not self.injected
            self._contained("callback de-duplication")

    # ------------------------------------------------------------------ run
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Begin the run (the ``lightning.trainer.fit`` span) with the Trainer facts."""
        if not self.active:
            return
        try:
            previous = self.run
            if previous is not None and previous.running:  # a previous fit never ended
                previous.end_at_last_activity(
                    RuntimeError("fit restarted before the previous run ended")
                )
            self._last_step = int(trainer.global_step)
            self._pending_batches = self._pending_samples = self._pending_tokens = 0
            framework_dir = _framework_dir(trainer)
            self.run = Run.start(
                FRAMEWORK,
                SPAN_PREFIX,
                config=_run_config(self.config, trainer, framework_dir, self.injected),
                attrs=self._run_attributes(trainer, pl_module),
                injected=self.injected,
                rank_facts=lightning_rank_facts(trainer),
                name=RUN_SPAN,
                framework_dir=framework_dir,
                tracer_provider=self._tracer_provider,
                meter_provider=self._meter_provider,
            )
        except Exception:
            self._contained("starting run telemetry")

    def _run_attributes(self, trainer: Any, pl_module: Any) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {
            A.FRAMEWORK: FRAMEWORK,
            A.LIGHTNING_NAMESPACE: self.namespace,
        }
        version = getattr(sys.modules.get(self.namespace), "__version__", None)
        if isinstance(version, str):
            attrs[A.LIGHTNING_VERSION] = version
        for key, attr in (
            (A.MAX_EPOCHS, "max_epochs"),
            (A.MAX_STEPS, "max_steps"),
            (A.ACCUMULATE_GRAD_BATCHES, "accumulate_grad_batches"),
            (A.NUM_NODES, "num_nodes"),
            (A.NUM_DEVICES, "num_devices"),
            (A.PRECISION, "precision"),
        ):
            value = as_attribute_value(getattr(trainer, attr, None))
            if value is not None:
                attrs[key] = value
        strategy = getattr(trainer, "strategy", None)
        if strategy is not None:
            attrs[A.LIGHTNING_STRATEGY] = type(strategy).__name__
        if pl_module is not None:
            attrs[A.MODEL_CLASS] = type(pl_module).__name__
            count = parameter_count(pl_module)
            if count is not None:
                attrs[A.MODEL_PARAMETERS] = count
        return attrs

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Tell the run its planned optimizer steps (projections and budgets every 1 %)."""
        run = self.run
        if run is None or not run.running or not self.active:
            return
        try:
            total = trainer.estimated_stepping_batches  # data is set up by now: no extra load
            if isinstance(total, (int, float)) and math.isfinite(total) and total > 0:
                run.set_total_steps(int(total))
        except Exception:
            self._contained("estimating the run's optimizer steps")

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """End the run: job totals (distributed), spans, report, summary."""
        run = self.run
        if not self.active or run is None or not run.running:
            return
        try:
            self._flush_pending()
            if run.finish(self._trainer_attributes(trainer)) is not None:
                self.last_summary = run.last_summary
        except Exception:
            self._contained("ending run telemetry")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """End the run and every open span with status ERROR."""
        if self.active:
            self.fail(exception, trainer)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """End a run that is still open (a fit that stopped without ``on_fit_end``)."""
        self.on_fit_end(trainer, pl_module)

    def fail(self, error: BaseException, trainer: Any = None) -> None:
        """End the run and every open span with status ERROR."""
        run = self.run
        if run is None or not run.running:
            return
        try:
            if run.fail(error, self._trainer_attributes(trainer)) is not None:
                self.last_summary = run.last_summary
        except Exception:
            self._contained("ending run telemetry")

    @staticmethod
    def _trainer_attributes(trainer: Any) -> dict[str, AttributeValue]:
        if trainer is None:
            return {}
        return {
            A.GLOBAL_STEP: int(trainer.global_step),
            A.EPOCH: int(trainer.current_epoch),
        }

    # ------------------------------------------------------------------ epochs
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Open a ``lightning.trainer.epoch`` span."""
        run = self.run
        if run is not None and run.running and self.active:
            try:
                run.begin_epoch(int(trainer.current_epoch))
            except Exception:
                self._contained("opening an epoch span")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """End the epoch span."""
        run = self.run
        if run is not None and self.active:
            try:
                self._flush_pending()
                run.end_epoch({A.GLOBAL_STEP: int(trainer.global_step)})
            except Exception:
                self._contained("ending an epoch span")

    # ------------------------------------------------------------------ batches (hot path)
    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        """Open a sampled step span on the first micro-batch of an optimizer step."""
        run = self.run
        if run is not None and run.step_every and self._pending_batches == 0:
            try:
                run.begin_step(trainer.global_step + 1)
            except Exception:
                self._contained("opening a step span")

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count the batch; count a step when the optimizer stepped (O(1))."""
        run = self.run
        if run is None:
            return
        samples, tokens = batch_size_and_tokens(batch)
        self._pending_samples += samples
        self._pending_tokens += tokens
        self._pending_batches += 1
        step = trainer.global_step
        if step != self._last_step:
            self._last_step = step
            samples, tokens = self._pending_samples, self._pending_tokens
            self._pending_batches = self._pending_samples = self._pending_tokens = 0
            try:
                if run.step(step, samples, tokens):
                    trainer.should_stop = True
            except Exception:
                self._contained("counting a step")

    def _flush_pending(self) -> None:
        """Count micro-batches that did not end in an optimizer step (no step counted)."""
        run = self.run
        if run is not None and (self._pending_samples or self._pending_tokens):
            run.add_work(self._pending_samples, self._pending_tokens)
        self._pending_batches = self._pending_samples = self._pending_tokens = 0

    # ------------------------------------------------------------------ validation
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Open a ``lightning.trainer.validation`` span (sanity checks are marked)."""
        run = self.run
        if run is None or not run.running or not self.active:
            return
        try:
            run.begin_evaluate(
                {
                    A.SANITY_CHECK: bool(trainer.sanity_checking),
                    A.GLOBAL_STEP: int(trainer.global_step),
                    A.EPOCH: int(trainer.current_epoch),
                },
                name=VALIDATION_SPAN,
            )
        except Exception:
            self._contained("opening a validation span")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """End the validation span with the scalar metrics as ``hf_eco2ai.eval.*``."""
        run = self.run
        if run is None or not run.evaluating or not self.active:
            return
        try:
            attrs: dict[str, AttributeValue] = {}
            if not trainer.sanity_checking:
                attrs.update(_scalar_metrics(getattr(trainer, "callback_metrics", None)))
            run.end_evaluate(attrs)
        except Exception:
            self._contained("ending a validation span")


def _framework_dir(trainer: Any) -> str | None:
    """Lightning's own output location, ``default_root_dir`` (or ``log_dir``), when it is a
    local path; None for a URL (``memory://``, ``s3://``...), which no local file can go to."""
    for attr in ("default_root_dir", "log_dir"):
        try:
            value = getattr(trainer, attr, None)
        except Exception:
            value = None
        if isinstance(value, str) and value:
            return None if "://" in value else value
    return None


def _lightning_writes_files(trainer: Any) -> bool:
    """Whether Lightning itself writes under its output location in this fit (a logger or a
    checkpoint callback): with ``logger=False, enable_checkpointing=False`` it writes nothing."""
    try:
        return bool(trainer.loggers) or trainer.checkpoint_callback is not None
    except Exception:
        return True


def _run_config(
    config: CarbonConfig, trainer: Any, framework_dir: str | None, injected: bool
) -> CarbonConfig:
    """The settings of this fit's run: ``config``, or a copy without the report file when the
    instrumentation (not a callback the user added) would be the only writer of files.

    An explicit ``output_dir`` or an explicit callback always gets its report. Without them the
    injected callback writes no report file (spans and metrics are unchanged) where Lightning's
    location is a URL or Lightning writes nothing there itself; logged once per reason.
    """
    if not injected or not config.write_report or config.output_dir is not None:
        return config
    if framework_dir is None:
        reason = "Lightning's default_root_dir is not a local directory"
    elif not _lightning_writes_files(trainer):
        reason = "Lightning writes no files in this fit (no logger, no checkpointing)"
    else:
        return config
    warn_once(
        _LOG,
        f"no-report:{reason}",
        "hf-eco2ai: no run report file: %s; set output_dir to get one",
        reason,
        level=logging.INFO,
    )
    return config.replace(write_report=False)


def _scalar_metrics(metrics: Any) -> dict[str, AttributeValue]:
    """``hf_eco2ai.eval.<name>`` for scalar metrics (once per validation, not per batch)."""
    out: dict[str, AttributeValue] = {}
    if not isinstance(metrics, Mapping):
        return out
    items = [(k, v) for k, v in metrics.items() if not str(k).startswith("train")]
    for key, value in items[:_MAX_EVAL_METRICS]:  # training metrics are not the validation's
        v = as_attribute_value(value)
        if v is None and getattr(value, "numel", None) is not None and value.numel() == 1:
            v = float(value.item())
        if v is not None:
            out[A.eval_metric(key)] = v
    return out


# --------------------------------------------------------------------------- entry points
def _factory(namespace: str) -> list[Any]:
    session = active_session()
    if session is None:
        return []
    try:
        cb = callback_class(namespace)(session.config)
        cb.injected = True
        return [cb]
    except Exception:
        _LOG.warning("hf-eco2ai: could not create the Lightning callback", exc_info=True)
        return []


def lightning_callbacks_factory() -> list[Any]:
    """``lightning.pytorch.callbacks_factory`` entry point: our callback while instrumented.

    >>> lightning_callbacks_factory()  # not instrumented
    []
    """
    return _factory("lightning.pytorch")


def pytorch_lightning_callbacks_factory() -> list[Any]:
    """``pytorch_lightning.callbacks_factory`` entry point: our callback while instrumented.

    >>> pytorch_lightning_callbacks_factory()  # not instrumented
    []
    """
    return _factory("pytorch_lightning")
