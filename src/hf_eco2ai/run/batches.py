"""What one batch holds: samples and tokens from tensor shapes only (no device sync).

One definition for every framework adapter: the Trainer's ``training_step`` inputs, Lightning's
``on_train_batch_end`` batch, a custom loop's batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

_LOG = logging.getLogger(__name__)


def _first_dim(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return None


def batch_size_and_tokens(batch: Any) -> tuple[int, int]:
    """Samples and tokens of one batch, from tensor shapes only.

    Tokens are counted when the batch maps ``input_ids`` to a tensor (``numel``: padding
    included). Samples are the first dimension of ``input_ids``, else of the batch itself, else
    of the first tensor found in a mapping or a tuple/list (one level of nesting).

    >>> import torch
    >>> batch_size_and_tokens({"input_ids": torch.zeros(4, 16, dtype=torch.long)})
    (4, 64)
    >>> batch_size_and_tokens((torch.zeros(8, 3), torch.zeros(8)))
    (8, 0)
    >>> batch_size_and_tokens({"pixel_values": torch.zeros(2, 3, 4, 4)})
    (2, 0)
    >>> batch_size_and_tokens(None)
    (0, 0)
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


def parameter_count(model: Any) -> int | None:
    """The number of parameters of a ``torch.nn.Module`` (None when it cannot be counted).

    >>> import torch
    >>> parameter_count(torch.nn.Linear(3, 2)), parameter_count(object())
    (8, None)
    """
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
        return None
