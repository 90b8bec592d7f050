"""`HFEco2AIInstrumentor`: the OpenTelemetry instrumentor of hf-eco2ai.

``opentelemetry-instrument python train.py`` loads it through the ``opentelemetry_instrumentor``
entry point; ``HFEco2AIInstrumentor().instrument()`` does the same in code. While instrumented:

* one sampler thread measures this process's devices (sensors → sampler → ledger);
* the ``hw.*`` and ``hf_eco2ai.*`` instruments report from the latest snapshot;
* every ``transformers.Trainer`` gets an :class:`~hf_eco2ai.Eco2AICallback` (exactly once),
  ``Trainer.train`` ends its spans with status ERROR when it raises, ``Trainer.evaluate`` is a
  span, and ``Trainer.log`` records gain ``hf_eco2ai/*`` entries;
* every Lightning ``Trainer`` (``lightning.pytorch`` and ``pytorch_lightning``) gets an
  :class:`~hf_eco2ai.lightning.Eco2AILightningCallback` through Lightning's
  ``callbacks_factory`` entry points (no patch; the factories return ``[]`` when not
  instrumented);
* the sampler measures host CPU/RAM only on local rank 0 (:mod:`hf_eco2ai.distributed`), and
  spans and data points carry the rank identity.

``uninstrument()`` unwraps every patch, stops the sampler, and the instruments' callbacks then
yield nothing. Importing ``hf_eco2ai`` does none of this.

Example:
    >>> from hf_eco2ai import HFEco2AIInstrumentor
    >>> HFEco2AIInstrumentor().instrumentation_dependencies()
    ()
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from hf_eco2ai._lifecycle import SigtermHandler, flush_providers
from hf_eco2ai._state import active_session, set_active_session
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.telemetry.session import TelemetrySession

_LOG = logging.getLogger(__name__)

_instruments_any = ("transformers >= 4.40", "lightning >= 2.1", "pytorch-lightning >= 2.1")

_TRAINER_METHODS = ("__init__", "train", "evaluate", "training_step", "log")


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
        if session is not None:
            session.close()

    # ------------------------------------------------------------------ transformers
    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        wrap_function_wrapper(owner, name, wrapper)
        self._patched.append((owner, name))

    def _patch_transformers(self) -> None:
        from transformers import Trainer

        init_signature = inspect.signature(Trainer.__init__)
        self._wrap(Trainer, "__init__", _trainer_init_wrapper(init_signature))
        self._wrap(Trainer, "train", _trainer_train_wrapper)
        self._wrap(Trainer, "evaluate", _trainer_evaluate_wrapper)
        self._wrap(Trainer, "training_step", _trainer_training_step_wrapper)
        self._wrap(Trainer, "log", _trainer_log_wrapper)


_CALLBACK_ATTR = "_hf_eco2ai_callback"


def _find_callback(trainer: Any) -> Any:
    cb = getattr(trainer, _CALLBACK_ATTR, None)
    if cb is not None:
        return cb
    from hf_eco2ai.integrations.transformers import Eco2AICallback

    handler = getattr(trainer, "callback_handler", None)
    for candidate in getattr(handler, "callbacks", ()):
        if isinstance(candidate, Eco2AICallback):
            return candidate
    return None


def _trainer_init_wrapper(signature: inspect.Signature) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        from hf_eco2ai.integrations.transformers import Eco2AICallback

        session = active_session()
        if session is None:
            return wrapped(*args, **kwargs)
        try:
            bound = signature.bind(instance, *args, **kwargs)
            callbacks = list(bound.arguments.get("callbacks") or [])
            explicit = any(
                isinstance(cb, Eco2AICallback)
                or (isinstance(cb, type) and issubclass(cb, Eco2AICallback))
                for cb in callbacks
            )
            if not explicit:
                callbacks.append(Eco2AICallback(session.config))
                bound.arguments["callbacks"] = callbacks
                args, kwargs = bound.args[1:], bound.kwargs
        except Exception:
            _LOG.warning("hf-eco2ai: could not inject Eco2AICallback", exc_info=True)
        result = wrapped(*args, **kwargs)
        try:
            handler = instance.callback_handler
            ours = [cb for cb in handler.callbacks if isinstance(cb, Eco2AICallback)]
            if ours:
                # first in line, so report_to integrations see the hf_eco2ai/* log entries
                handler.callbacks.remove(ours[0])
                handler.callbacks.insert(0, ours[0])
                setattr(instance, _CALLBACK_ATTR, ours[0])
        except Exception:
            _LOG.debug("hf-eco2ai: could not reorder callbacks", exc_info=True)
        return result

    return wrapper


def _trainer_train_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        cb = _find_callback(instance)
        if cb is not None:
            cb.fail(exc, getattr(instance, "state", None))
        raise


def _trainer_evaluate_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    cb = _find_callback(instance)
    opened = False
    if cb is not None:
        try:
            opened = cb.begin_evaluate()
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


def _trainer_training_step_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    cb = getattr(instance, _CALLBACK_ATTR, None)
    if cb is not None:
        inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
        cb.count_batch(inputs)
    return wrapped(*args, **kwargs)


def _trainer_log_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    cb = getattr(instance, _CALLBACK_ATTR, None)
    logs = args[0] if args else kwargs.get("logs")
    if cb is not None and isinstance(logs, dict):
        try:
            logs.update(cb.log_entries())
        except Exception:
            _LOG.debug("hf-eco2ai: could not add log entries", exc_info=True)
    return wrapped(*args, **kwargs)
