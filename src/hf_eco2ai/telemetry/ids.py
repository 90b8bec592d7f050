"""Span and trace ids that never touch the global ``random`` module.

The OpenTelemetry SDK's default ``RandomIdGenerator`` draws ids from Python's global ``random``
module (opentelemetry-python issues 2974 and 4376). Training code seeds that module
(``transformers.set_seed(42)``, Lightning's ``seed_everything``), so every job would get the same
trace id, and each span we open would advance the user's random stream. hf-eco2ai's own tracer
therefore draws its ids from the operating system (:class:`random.SystemRandom`, i.e.
``os.urandom``): unique across processes, forks and seeds, and invisible to the user's generators.
The user's tracer provider and every other tracer are left exactly as they are.

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
import random

from opentelemetry import trace

try:  # the SDK is optional: without it there are no ids to generate
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
except ImportError:  # pragma: no cover - exercised only without opentelemetry-sdk
    RandomIdGenerator = None  # type: ignore[assignment,misc]

_LOG = logging.getLogger(__name__)
_SYSTEM_RANDOM = random.SystemRandom()


class SystemRandomIdGenerator(RandomIdGenerator if RandomIdGenerator is not None else object):  # type: ignore[misc]
    """Random ids from ``os.urandom`` (fork-safe, unaffected by ``random.seed``)."""

    def generate_span_id(self) -> int:
        """A non-zero 64-bit span id."""
        span_id = _SYSTEM_RANDOM.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:  # pragma: no cover - probability 2**-64
            span_id = _SYSTEM_RANDOM.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        """A non-zero 128-bit trace id."""
        trace_id = _SYSTEM_RANDOM.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:  # pragma: no cover - probability 2**-128
            trace_id = _SYSTEM_RANDOM.getrandbits(128)
        return trace_id

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
