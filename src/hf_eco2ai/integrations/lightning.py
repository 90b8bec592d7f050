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

from hf_eco2ai._state import active_session
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.distributed import JobAccounting, RankInfo, finish_job, rank_info
from hf_eco2ai.telemetry.session import TelemetrySession
from hf_eco2ai.telemetry.spans import RunTelemetry, as_attribute_value, log_summary

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


# --------------------------------------------------------------------------- batches
def _first_dim(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return None


def batch_size_and_tokens(batch: Any) -> tuple[int, int]:
    """Samples and tokens of one training batch, from tensor shapes only (no device sync).

    Tokens are counted when the batch maps ``input_ids`` to a tensor (padding included, as in
    the Trainer integration). Samples are the first dimension of ``input_ids``, else of the
    first tensor found in a mapping, a tuple/list (one level of nesting) or the batch itself.

    >>> import torch
    >>> batch_size_and_tokens({"input_ids": torch.zeros(4, 16, dtype=torch.long)})
    (4, 64)
    >>> batch_size_and_tokens((torch.zeros(8, 3), torch.zeros(8)))
    (8, 0)
    """
    try:
        n = _first_dim(batch)
        if n is not None:
            return n, 0
        if isinstance(batch, Mapping) or hasattr(batch, "keys"):
            ids = batch.get("input_ids") if hasattr(batch, "get") else None
            n = _first_dim(ids)
            if n is not None and ids is not None:
                return n, int(ids.numel())
            values = list(batch.values())
        elif isinstance(batch, (list, tuple)):
            values = list(batch)
        else:
            return 0, 0
        for value in values:
            n = _first_dim(value)
            if n is not None:
                return n, 0
        for value in values:
            if isinstance(value, (list, tuple, Mapping)):
                n, _ = batch_size_and_tokens(value)
                if n:
                    return n, 0
    except Exception:
        _LOG.debug("hf-eco2ai: could not size a batch", exc_info=True)
    return 0, 0


def _parameter_count(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
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
        self.run: RunTelemetry | None = None
        self.rank: RankInfo | None = None
        self.last_summary: str | None = None
        self._own_session: TelemetrySession | None = None
        self._job: JobAccounting | None = None
        self._last_step = 0
        self._pending_batches = 0
        self._pending_samples = 0
        self._pending_tokens = 0
        self._stop_requested = False
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        # picklable before fit (ddp_spawn pickles the Trainer): drop live telemetry
        state = dict(self.__dict__)
        state.update(run=None, _own_session=None, _job=None)
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

    def _session(self, rank: RankInfo) -> TelemetrySession | None:
        session = active_session()
        if session is not None:
            session.set_rank(rank)
            return session
        if self.injected:  # uninstrumented since the Trainer was built: do nothing
            return None
        self._own_session = TelemetrySession(self.config, rank=rank)
        return self._own_session

    def _release(self) -> None:
        if self._own_session is not None:
            session, self._own_session = self._own_session, None
            session.close()

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
        """Open the ``lightning.trainer.fit`` span with the Trainer facts."""
        if not self.active:
            return
        try:
            if self.run is not None and self.run.running:  # a previous fit never ended
                self.fail(RuntimeError("fit restarted before the previous run ended"))
            self.rank = rank_info(lightning_rank_facts(trainer))
            session = self._session(self.rank)
            if session is None:
                self.run = None
                return
            self.run = RunTelemetry(session, FRAMEWORK, SPAN_PREFIX)
            self._last_step = int(trainer.global_step)
            self._pending_batches = self._pending_samples = self._pending_tokens = 0
            self._stop_requested = False
            self.run.begin_run(self._run_attributes(trainer, pl_module), name=RUN_SPAN)
            self._job = JobAccounting.begin(self.rank, FRAMEWORK)
        except Exception:
            self._contained("starting run telemetry")

    def _run_attributes(self, trainer: Any, pl_module: Any) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {
            "hf_eco2ai.framework": FRAMEWORK,
            "hf_eco2ai.lightning.namespace": self.namespace,
        }
        version = getattr(sys.modules.get(self.namespace), "__version__", None)
        if isinstance(version, str):
            attrs["hf_eco2ai.lightning.version"] = version
        for key, attr in (
            ("hf_eco2ai.max_epochs", "max_epochs"),
            ("hf_eco2ai.max_steps", "max_steps"),
            ("hf_eco2ai.accumulate_grad_batches", "accumulate_grad_batches"),
            ("hf_eco2ai.num_nodes", "num_nodes"),
            ("hf_eco2ai.num_devices", "num_devices"),
            ("hf_eco2ai.precision", "precision"),
        ):
            value = as_attribute_value(getattr(trainer, attr, None))
            if value is not None:
                attrs[key] = value
        strategy = getattr(trainer, "strategy", None)
        if strategy is not None:
            attrs["hf_eco2ai.lightning.strategy"] = type(strategy).__name__
        if pl_module is not None:
            attrs["hf_eco2ai.model.class"] = type(pl_module).__name__
            count = _parameter_count(pl_module)
            if count is not None:
                attrs["hf_eco2ai.model.parameters"] = count
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

    def _budget_stop(self, trainer: Any) -> None:
        """A budget with ``budget_action='stop'`` was exceeded: stop gracefully (single rank)."""
        self._stop_requested = True
        if self.rank is not None and self.rank.distributed:
            # one rank leaving the loop alone would hang the others in their next collective
            _LOG.warning(
                "hf-eco2ai: budget exceeded on rank %d of %d; not stopping a multi-rank job "
                "from one rank (the ranks would desynchronise)",
                self.rank.rank,
                self.rank.world_size,
            )
            return
        trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Gather job totals (distributed), end the run span, log the summary."""
        if not self.active or self.run is None:
            return
        self._flush_pending()
        job, self._job = self._job, None
        if self.rank is not None:
            finish_job(job, self.run, self.rank, FRAMEWORK)
        self._finish(trainer, None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """End every open span with status ERROR."""
        if self.active:
            self.fail(exception, trainer)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """End a run that is still open (a fit that stopped without ``on_fit_end``)."""
        if self.active and self.run is not None and self.run.running:
            self._finish(trainer, None)

    def fail(self, error: BaseException, trainer: Any = None) -> None:
        """End every open span with status ERROR and release the session."""
        self._job = None
        self._finish(trainer, error)

    def _finish(self, trainer: Any, error: BaseException | None) -> None:
        run = self.run
        if run is None or not run.running:
            self._release()
            return
        try:
            attrs: dict[str, AttributeValue] = {}
            if trainer is not None:
                attrs["hf_eco2ai.global_step"] = int(trainer.global_step)
                attrs["hf_eco2ai.epoch"] = int(trainer.current_epoch)
            window = run.end_run(attrs, error)
            if window is not None:
                self.last_summary = log_summary(
                    FRAMEWORK, window, run.counters.run_samples, run.counters.run_tokens
                )
        except Exception:
            self._contained("ending run telemetry")
        finally:
            self._release()

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
                run.end_epoch({"hf_eco2ai.global_step": int(trainer.global_step)})
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
                run.step(step, samples, tokens)
                if run.should_stop and not self._stop_requested:
                    self._budget_stop(trainer)
            except Exception:
                self._contained("counting a step")

    def _flush_pending(self) -> None:
        """Count micro-batches that did not end in an optimizer step (no step counted)."""
        run = self.run
        if run is not None and (self._pending_samples or self._pending_tokens):
            run.counters.add(0, self._pending_samples, self._pending_tokens)
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
                    "hf_eco2ai.sanity_check": bool(trainer.sanity_checking),
                    "hf_eco2ai.global_step": int(trainer.global_step),
                    "hf_eco2ai.epoch": int(trainer.current_epoch),
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


def _scalar_metrics(metrics: Any) -> dict[str, AttributeValue]:
    """``hf_eco2ai.eval.<name>`` for scalar metrics (once per validation, not per batch)."""
    out: dict[str, AttributeValue] = {}
    if not isinstance(metrics, Mapping):
        return out
    for key, value in list(metrics.items())[:_MAX_EVAL_METRICS]:
        v = as_attribute_value(value)
        if v is None and getattr(value, "numel", None) is not None and value.numel() == 1:
            v = float(value.item())
        if v is not None:
            out[f"hf_eco2ai.eval.{key}"] = v
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
