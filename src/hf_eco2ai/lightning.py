"""Public home of the PyTorch Lightning callback: ``hf_eco2ai.lightning.Eco2AILightningCallback``.

Importing this module imports no Lightning. Constructing the callback returns an instance of
the class built for the Trainer's namespace (``lightning.pytorch`` or ``pytorch_lightning``):
the ``namespace=`` argument when given, else the namespace that is imported (``lightning.pytorch``
when both are). See :mod:`hf_eco2ai.integrations.lightning_callback` and ``docs/lightning.md``.

Example:
    >>> import pytorch_lightning as pl
    >>> from hf_eco2ai.lightning import Eco2AILightningCallback
    >>> cb = Eco2AILightningCallback(namespace="pytorch_lightning")
    >>> isinstance(cb, pl.Callback), isinstance(cb, Eco2AILightningCallback)
    (True, True)
"""

from __future__ import annotations

from hf_eco2ai.integrations.lightning_callback import (
    Eco2AILightningCallback,
    batch_size_and_tokens,
    callback_class,
    lightning_callbacks_factory,
    pytorch_lightning_callbacks_factory,
    resolve_namespace,
)

__all__ = [
    "Eco2AILightningCallback",
    "batch_size_and_tokens",
    "callback_class",
    "lightning_callbacks_factory",
    "pytorch_lightning_callbacks_factory",
    "resolve_namespace",
]
