"""Span and trace ids that never touch the global ``random`` module.

The OpenTelemetry SDK's default ``RandomIdGenerator`` draws ids from Python's global ``random``
module (opentelemetry-python issues 2974 and 4376). Training code seeds that module
(``transformers.set_seed(42)``, Lightning's ``seed_everything``), so every job would get the same
trace id, and each span we open would advance the user's random stream. hf-eco2ai's own tracer
therefore draws its ids from the operating system (``os.urandom``): unique across processes,
forks and seeds, and invisible to the user's generators. The user's tracer provider and every
other tracer are left exactly as they are.

The bytes are read in blocks of :data:`BLOCK` ids and handed out one by one (an id costs a
deque pop, not a system call: ``os.urandom`` releases the GIL around its system call, so a
call per id would also let any other thread in, in the middle of starting a span). A forked
child drops the block it inherited (``os.register_at_fork``), so parent and child never hand
out the same id.

Example:
    >>> import random
    >>> saved = random.getstate()  # the example leaves the process's generator as it found it
    >>> random.seed(42); expected = random.random()
    >>> random.seed(42); gen = SystemRandomIdGenerator()
    >>> gen.generate_trace_id() != 0, random.random() == expected
    (True, True)
    >>> random.setstate(saved)
"""

from __future__ import annotations

import logging
import os
from collections import deque

try:  # the SDK is optional: without it there are no ids to generate
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
except ImportError:  # pragma: no cover - exercised only without opentelemetry-sdk
    RandomIdGenerator = None  # type: ignore[assignment,misc]

_LOG = logging.getLogger(__name__)

BLOCK = 64
"""Ids read from ``os.urandom`` at once (one system call per 64 ids)."""


class _Pool:
    """Non-zero ``bits``-bit ids from ``os.urandom``, read a block at a time. Thread-safe: a
    deque pop is atomic, and two threads refilling at once each add fresh ids."""

    __slots__ = ("ids", "size")

    def __init__(self, bits: int) -> None:
        self.size = bits // 8
        self.ids: deque[int] = deque()

    def take(self) -> int:
        ids = self.ids
        while True:
            try:
                return ids.popleft()
            except IndexError:
                size = self.size
                raw = os.urandom(size * BLOCK)
                ids.extend(
                    value
                    for i in range(0, len(raw), size)
                    if (value := int.from_bytes(raw[i : i + size], "big"))  # never 0 (invalid)
                )

    def drop(self) -> None:
        self.ids = deque()


_SPAN_IDS = _Pool(64)
_TRACE_IDS = _Pool(128)


def _drop_inherited_ids() -> None:
    _SPAN_IDS.drop()
    _TRACE_IDS.drop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_ids)


class SystemRandomIdGenerator(RandomIdGenerator if RandomIdGenerator is not None else object):  # type: ignore[misc]
    """Random ids from ``os.urandom`` (fork-safe, unaffected by ``random.seed``)."""

    def generate_span_id(self) -> int:
        """A non-zero 64-bit span id."""
        return _SPAN_IDS.take()

    def generate_trace_id(self) -> int:
        """A non-zero 128-bit trace id."""
        return _TRACE_IDS.take()

    def is_trace_id_random(self) -> bool:
        """All 128 bits are random (W3C Trace Context level 2 ``random`` flag)."""
        return True


def use_private_ids(tracer: object) -> bool:
    """Give an SDK tracer of ours ids from :class:`SystemRandomIdGenerator`; True if changed.

    Only a tracer still on the SDK's default generator (which reads the global ``random``) is
    changed: a generator the user chose (``OTEL_PYTHON_ID_GENERATOR``, X-Ray ids…) is kept.
    Tracers other than the one passed in (the user's, other instrumentations') are not touched.
    """
    if RandomIdGenerator is None:  # pragma: no cover
        return False
    current = getattr(tracer, "id_generator", None)
    if type(current) is not RandomIdGenerator:
        return isinstance(current, SystemRandomIdGenerator)
    try:
        tracer.id_generator = SystemRandomIdGenerator()  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - a read-only attribute in some future SDK
        _LOG.debug("hf-eco2ai: could not set the tracer's id generator", exc_info=True)
        return False
    return True
