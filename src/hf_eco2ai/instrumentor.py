"""`HFEco2AIInstrumentor`: the OpenTelemetry instrumentor of hf-eco2ai.

``opentelemetry-instrument python train.py`` loads it through the ``opentelemetry_instrumentor``
entry point; ``HFEco2AIInstrumentor().instrument()`` does the same in code. While instrumented:

* one sampler thread measures this process's devices (sensors → sampler → ledger);
* the ``hw.*`` and ``hf_eco2ai.*`` instruments report from the latest snapshot;
* every ``transformers.Trainer`` is measured from its ``train()`` (also a Trainer built before
  ``instrument()``): a callback of ours is attached to the Trainer's callback handler and called
  before the Trainer's own callbacks — it is not added to ``trainer.callback_handler.callbacks``,
  so the user's callback list is exactly what the user made it. A Trainer with an explicit
  :class:`~hf_eco2ai.Eco2AICallback` is measured by that callback, with its settings.
  ``Trainer.train`` ends its run with status ERROR when it raises; ``evaluate()`` and
  ``predict()`` are evaluation spans inside training and runs of their own outside it;
  ``Trainer.log`` records gain ``hf_eco2ai/*`` entries;
* every Lightning ``Trainer`` (``lightning.pytorch`` and ``pytorch_lightning``) gets an
  :class:`~hf_eco2ai.lightning.Eco2AILightningCallback` through Lightning's
  ``callbacks_factory`` entry points (Lightning's documented plugin mechanism; the factories
  return ``[]`` when not instrumented);
* the sampler measures host CPU/RAM only on local rank 0 (:mod:`hf_eco2ai.distributed`), and
  spans and data points carry the rank identity;
* no signal handler is installed unless ``handle_sigterm=True``.

``uninstrument()`` unwraps every patch, ends runs still open (status ``interrupted``, their
window ending there), stops the sampler, and the instruments' callbacks then yield nothing.
Trainers built while instrumented stop measuring too. Importing ``hf_eco2ai`` does none of this.

Example:
    >>> from hf_eco2ai import HFEco2AIInstrumentor
    >>> HFEco2AIInstrumentor().instrumentation_dependencies()
    ()
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import weakref
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.run import InstrumentationRemoved, open_runs
from hf_eco2ai.run.sigterm import SigtermHandler, flush_providers
from hf_eco2ai.telemetry.session import TelemetrySession, active_session, set_active_session

_LOG = logging.getLogger(__name__)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class HFEco2AIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Energy and carbon telemetry for Hugging Face Trainer (and Lightning) training.

    ``instrument(tracer_provider=None, meter_provider=None, config=None)``: global providers
    when none are given; ``config`` defaults to :meth:`CarbonConfig.from_env` (a bad value
    raises :class:`~hf_eco2ai.config.ConfigError` here, before training starts).
    """

    def __init__(self) -> None:
        super().__init__()
        # A singleton (BaseInstrumentor.__new__): constructing it again while instrumented must
        # not forget what was patched, or uninstrument() would leave the patches in place.
        if not hasattr(self, "_patched"):
            self._patched: list[tuple[Any, str]] = []
            self._sigterm: SigtermHandler | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """None required: any of transformers / lightning is enough (``instruments-any``)."""
        return ()

    @property
    def session(self) -> TelemetrySession | None:
        """The active telemetry session (None when not instrumented)."""
        return active_session()

    def _instrument(self, **kwargs: Any) -> None:
        config = kwargs.get("config")
        if config is None:
            try:
                config = CarbonConfig.from_env()
            except ValueError as exc:
                # Under opentelemetry-instrument this exception is only logged, with a traceback
                # that a logging set-up may send elsewhere: say it on stderr, once, at start.
                sys.stderr.write(f"{exc}\nhf-eco2ai: NOT measuring this process (fix the value)\n")
                raise
        elif not isinstance(config, CarbonConfig):
            raise TypeError("config must be a hf_eco2ai.CarbonConfig")
        session = TelemetrySession(
            config,
            tracer_provider=kwargs.get("tracer_provider"),
            meter_provider=kwargs.get("meter_provider"),
        )
        set_active_session(session)
        if config.handle_sigterm:
            self._sigterm = SigtermHandler.install(
                flush_providers(
                    kwargs.get("tracer_provider") or trace.get_tracer_provider(),
                    kwargs.get("meter_provider") or metrics.get_meter_provider(),
                )
            )
        if _installed("transformers"):
            try:
                self._patch_transformers()
            except Exception:
                _LOG.warning("hf-eco2ai: could not instrument transformers", exc_info=True)
        _LOG.debug("hf-eco2ai: instrumented (%d devices)", len(session.monitor.devices))

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._sigterm is not None:
            self._sigterm.uninstall()
            self._sigterm = None
        for owner, name in reversed(self._patched):
            unwrap(owner, name)
        self._patched.clear()
        session = active_session()
        set_active_session(None)
        _ATTACHED.clear()
        _HIDDEN.clear()
        if session is None:
            return
        for run in open_runs():
            if run.session is session:
                try:
                    run.fail(InstrumentationRemoved("uninstrument() was called during the run"))
                except Exception:
                    _LOG.warning("hf-eco2ai: could not end a run at uninstrument", exc_info=True)
        session.close()

    # ------------------------------------------------------------------ transformers
    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        wrap_function_wrapper(owner, name, wrapper)
        self._patched.append((owner, name))

    def _patch_transformers(self) -> None:
        from transformers import Trainer
        from transformers.trainer_callback import CallbackHandler

        self._wrap(Trainer, "train", _trainer_train_wrapper)
        self._wrap(Trainer, "evaluate", _evaluation_wrapper("evaluate"))
        self._wrap(Trainer, "predict", _evaluation_wrapper("predict"))
        self._wrap(Trainer, "training_step", _trainer_training_step_wrapper)
        self._wrap(Trainer, "log", _trainer_log_wrapper)
        self._wrap(CallbackHandler, "call_event", _call_event_wrapper)


# Trainer -> the callback that measures it (the user's explicit one, or ours), and the callback
# handler -> our attached callback. Weak: a Trainer's measurement goes away with the Trainer.
_ATTACHED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_HIDDEN: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _callback_for(trainer: Any) -> Any:
    """The callback measuring ``trainer``: the user's explicit one, else ours (attached once)."""
    from hf_eco2ai.integrations.transformers_callback import Eco2AICallback, rows_per_sample

    handler = getattr(trainer, "callback_handler", None)
    cb = _ATTACHED.get(trainer)
    if cb is not None and (_HIDDEN.get(handler) is cb or cb in getattr(handler, "callbacks", ())):
        return cb
    for candidate in getattr(handler, "callbacks", ()):
        if isinstance(candidate, Eco2AICallback):
            candidate.rows_per_sample = rows_per_sample(trainer)
            _ATTACHED[trainer] = candidate
            return candidate
    session = active_session()
    if session is None or handler is None:
        return None
    cb = Eco2AICallback(session.config)
    cb.injected = True
    cb.rows_per_sample = rows_per_sample(trainer)
    _ATTACHED[trainer] = cb
    _HIDDEN[handler] = cb
    return cb


def measuring_callback(trainer: Any) -> Any:
    """The :class:`~hf_eco2ai.Eco2AICallback` measuring ``trainer``: the user's explicit one, or
    the instrumentor's (attached now if instrumented and not yet attached); None when nothing
    measures it. It is never in ``trainer.callback_handler.callbacks`` unless the user put it
    there.

    >>> measuring_callback(object()) is None  # not a Trainer, not instrumented
    True
    """
    try:
        return _callback_for(trainer)
    except Exception:
        return None


def _trainer_train_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    try:
        cb = _callback_for(instance)
    except Exception:
        _LOG.warning("hf-eco2ai: could not attach to the Trainer", exc_info=True)
        cb = None
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if cb is not None:
            cb.fail(exc, getattr(instance, "state", None))
        raise
    if cb is not None:
        cb.left_training(getattr(instance, "state", None))
    return result


def _evaluation_wrapper(kind: str) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        cb: Any = None
        opened = False
        try:
            cb = _callback_for(instance)
            if cb is not None:
                opened = cb.begin_evaluate(instance, kind)
        except Exception:
            _LOG.debug("hf-eco2ai: could not open an evaluation span", exc_info=True)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if opened:
                cb.end_evaluate(exc)
            raise
        if opened:
            cb.end_evaluate()
        return result

    return wrapper


def _trainer_training_step_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    cb = _ATTACHED.get(instance)
    if cb is not None:
        inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
        cb.count_batch(inputs)
    return wrapped(*args, **kwargs)


def _trainer_log_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    cb = _ATTACHED.get(instance)
    logs = args[0] if args else kwargs.get("logs")
    if cb is not None and isinstance(logs, dict):
        try:
            logs.update(cb.log_entries())
        except Exception:
            _LOG.debug("hf-eco2ai: could not add log entries", exc_info=True)
    return wrapped(*args, **kwargs)


_DISPATCHED = frozenset(
    {
        "on_train_begin",
        "on_train_end",
        "on_epoch_begin",
        "on_epoch_end",
        "on_step_begin",
        "on_step_end",
        "on_prediction_step",
        "on_evaluate",
        "on_log",
    }
)
"""The events our callback acts on (the others are not dispatched to it at all)."""

_dispatch_failed = False


def _call_event_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    # per Trainer event (several per step): the cheap membership test first
    cb = _HIDDEN.get(instance) if args and args[0] in _DISPATCHED else None
    if cb is not None:
        try:
            event, rest = args[0], args[1:]
            getattr(cb, event)(*rest, model=getattr(instance, "model", None), **kwargs)
        except Exception:
            global _dispatch_failed
            if not _dispatch_failed:
                _dispatch_failed = True
                _LOG.warning("hf-eco2ai: a Trainer event failed in hf-eco2ai", exc_info=True)
    return wrapped(*args, **kwargs)
