"""Measurement windows for any code: ``hf_eco2ai.measure()``.

A window is a span named by you that ends with the energy (attributed, PUE applied, with its
uncertainty band), the CO2e, the duration and the per-device breakdown of its own time, like
Zeus's measurement windows, as OpenTelemetry span attributes::

    import hf_eco2ai

    with hf_eco2ai.measure("tokenize", dataset="wiki") as m:
        tokens = tokenizer(texts)
    print(m.energy_j, m.emissions_g, m.duration_s, m.devices)

    @hf_eco2ai.measure("eval")          # a fresh window per call; async functions too
    def evaluate(model, batch): ...

While instrumented (``HFEco2AIInstrumentor().instrument()`` or ``opentelemetry-instrument``)
a window shares the running sampler and tracer: it reads two ledger snapshots (no I/O on the
calling thread). Without ``instrument()`` it acquires the process-wide monitor for its own
duration (started by the first window, stopped by the last) and the global tracer provider.

**Where the end of a window runs.** While instrumented, leaving a ``with`` window whose span
records costs the calling thread only what cannot move: the end time (monotonic, and wall clock
for the span), the end snapshot and, on error, the span's status and exception (their event
time is the window's end). The rest — the window's energy per device, the two dozen
``hf_eco2ai.*`` attributes the SDK validates one by one, and ``span.end(end_time=...)`` with the
window's real end time (the span processors' ``on_end``) — is handed to the sampler thread that
already runs (:meth:`~hf_eco2ai.sampling_thread.Sampler.call_soon`; no thread of our own), which
does it at once, between its readings. So the span is the same span, with the same parent,
times, attributes and status; it only reaches the span processors a moment later, in the order
the windows ended. Reading ``m.result``/``m.energy_j``/... finishes that window at once on the
reading thread (whichever thread gets there first does the work, once). Windows still pending
are finished by :func:`flush` (call it before ``tracer_provider.force_flush()``), by
``uninstrument()``, when the sampler stops, and at exit (before the SDK's own exit shutdown).
``stop()`` returns the numbers, so it finishes its window on the calling thread; so does every
window without ``instrument()`` (it owns the monitor, which it may stop at its end).

The span itself starts on the calling thread, with your attributes and the rank identity, so a
sampler sees them and spans started inside the window are its children. Starting it later
with pre-drawn ids (a ``NonRecordingSpan`` made current meanwhile) would need the SDK to create
a span with given ids, which it has no public API for, and would run samplers and processors'
``on_start`` off the caller's thread and context: not done.

Every window keeps its state in its own object and the current span in the OpenTelemetry
context (a context variable), so nested and overlapping windows, threads and asyncio tasks each
measure their own time. A failure inside hf-eco2ai never reaches your code: it is logged once
and the window's numbers are NaN.

Example:
    >>> from hf_eco2ai import CarbonConfig
    >>> from hf_eco2ai.energy_monitor import set_monitor_factory
    >>> from hf_eco2ai.energy_monitor import EnergyMonitor
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> set_monitor_factory(lambda config, rank: EnergyMonitor(config, sensors=[],
    ...     intensity=StaticIntensity(CarbonIntensity(50.0, "FR", "config"))))
    >>> with measure("tokenize", config=CarbonConfig(write_report=False)) as m:
    ...     _ = sum(range(1000))
    >>> m.energy_j, m.duration_s >= 0, dict(m.devices)
    (0.0, True, {})
    >>> set_monitor_factory(None)
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from hf_eco2ai._logging import warn_once
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_ledger import Snapshot
from hf_eco2ai.energy_monitor import EnergyMonitor, acquire_monitor, release_monitor
from hf_eco2ai.integrations.measure_result import (
    DEVICE_IDS,
    DEVICE_JOULES,
    DEVICE_TYPES,
    NAN,
    Measurement,
    WindowEnds,
    compute_measurement,
    unmeasured,
)
from hf_eco2ai.telemetry.session import active_session
from hf_eco2ai.telemetry.spans import record_error

__all__ = [
    "DEVICE_IDS",
    "DEVICE_JOULES",
    "DEVICE_TYPES",
    "Measure",
    "Measurement",
    "flush",
    "measure",
]

_LOG = logging.getLogger("hf_eco2ai")

_wall_ns = time.time_ns
"""The span's end time (ns since the epoch), taken where the window ends."""
_CLAIMS = threading.Lock()
"""Guards who finishes a closed window (held for a few bytecodes only, never during the work:
a span processor that blocks in one thread never holds up another, least of all the
sampler thread)."""

P = ParamSpec("P")
R = TypeVar("R")


def _attribute(value: Any) -> AttributeValue:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = list(value)
        if items and all(isinstance(v, str) for v in items):
            return [str(v) for v in items]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return [float(v) for v in items]
    return str(value)


def _resolve(
    config: CarbonConfig | None, tracer_provider: TracerProvider | None
) -> tuple[EnergyMonitor, Tracer, Mapping[str, AttributeValue], bool]:
    """The monitor, tracer and identity attributes of a window; True when the window acquired
    the monitor."""
    session = active_session()
    if session is not None and not session.closed:
        if tracer_provider is None:
            return session.monitor, session.tracer, session.span_identity(), False
        tracer, identity = _tracer(tracer_provider, session.identity())
        return session.monitor, tracer, identity, False
    from hf_eco2ai.distributed import rank_info

    rank = rank_info()
    monitor = acquire_monitor(
        config if config is not None else CarbonConfig.from_env(), local_rank=rank.local_rank
    )
    try:
        monitor.sampler.tick()  # the window starts on a fresh reading (its own measurement)
        tracer, identity = _tracer(tracer_provider, rank.attributes())
    except BaseException:
        release_monitor(monitor)
        raise
    return monitor, tracer, identity, True


def _tracer(
    provider: TracerProvider | None, identity: Mapping[str, AttributeValue]
) -> tuple[Tracer, Mapping[str, AttributeValue]]:
    """Our tracer on ``provider`` (ids from the OS), and the identity attributes its spans need
    (none when the provider's Resource carries them)."""
    from hf_eco2ai.telemetry.ids import use_private_ids
    from hf_eco2ai.telemetry.session import SCHEMA_URL, resource_has_identity
    from hf_eco2ai.version import __version__

    tracer = trace.get_tracer("hf_eco2ai", __version__, provider, schema_url=SCHEMA_URL)
    use_private_ids(tracer)
    if resource_has_identity(provider or trace.get_tracer_provider()):
        return tracer, {}
    return tracer, identity


def _failed(name: str, where: str, exc: Exception) -> None:
    warn_once(
        _LOG,
        f"measure-{where}",
        "hf-eco2ai: measure(%r) could not %s its window (%s: %s); the code runs on, "
        "unmeasured (logged once)",
        name,
        where,
        type(exc).__name__,
        exc,
    )
    _LOG.debug("hf-eco2ai: measure(%r) failed", name, exc_info=True)


class _Ending:
    """A closed window still to finish: its numbers, and (when ``span`` is given) its span's
    ``hf_eco2ai.*`` attributes and end at ``end_time``.

    Finished once, by whoever comes first: the sampler thread (calling it: the job handed
    over), a thread reading the window's result, :func:`flush`. A reader that finds another
    thread at work waits for it; the job never waits (someone else is already doing it).
    """

    __slots__ = ("claimed_by", "end_time", "ends", "result", "span", "waiter")

    def __init__(self, ends: WindowEnds, span: Span | None, end_time: int | None) -> None:
        self.ends = ends
        self.span = span
        self.end_time = end_time
        self.result: Measurement | None = None
        self.claimed_by = 0
        self.waiter: threading.Event | None = None

    def __call__(self) -> None:
        self._finish(wait=False)  # a reader is already at it: its thread ends the span

    def finish(self) -> Measurement:
        """The window's numbers, computed (and its span ended) on first call; never raises."""
        result = self._finish(wait=True)
        if result is None:  # pragma: no cover - a waiter always finds the result set
            ends = self.ends
            result = unmeasured(ends[0], ends[2], ends[4])
        return result

    def _finish(self, *, wait: bool) -> Measurement | None:
        result = self.result
        if result is not None:
            return result
        me = threading.get_ident()
        waiter = None
        with _CLAIMS:
            result = self.result
            if result is not None:
                return result
            claimer = self.claimed_by
            if not claimer:
                self.claimed_by = me
            elif claimer != me:
                if not wait:
                    return None
                waiter = self.waiter = self.waiter or threading.Event()
        if waiter is not None:  # another thread is at work: its result, when it is done
            waiter.wait()
            return self.result
        return self._work()

    def _work(self) -> Measurement:
        ends, span = self.ends, self.span
        self.span = None  # a re-entrant call on this thread (a signal handler) ends nothing
        result: Measurement | None = None
        try:
            try:
                result = compute_measurement(ends, span)
            except Exception as exc:
                _failed(ends[0], "end", exc)
            if span is not None:
                try:
                    span.end(end_time=self.end_time)
                except Exception as exc:
                    _failed(ends[0], "end", exc)
        finally:  # whatever happened, waiters are released
            with _CLAIMS:
                if self.result is None:
                    self.result = result or unmeasured(ends[0], ends[2], ends[4])
                done, waiter = self.result, self.waiter
            if waiter is not None:
                waiter.set()
        return done


def flush(timeout_s: float | None = 5.0) -> bool:
    """End the spans of every window that has closed and is still being finished off the
    calling thread, now, on this thread; True when all are ended.

    While instrumented, a ``with measure(...)`` window's span ends a moment after the window
    (on the sampler thread, with the window's real end time). Call ``flush()`` before
    ``tracer_provider.force_flush()`` (or before reading an in-memory exporter in a test) to be
    sure those spans have reached the span processors. ``uninstrument()``, the end of sampling
    and the interpreter's exit do it too. Waits at most ``timeout_s`` for a window the sampler
    thread is finishing (None: no bound); returns False if it had to give up.

    Example:
        >>> flush()
        True
    """
    from hf_eco2ai.sampling_thread import run_all_pending

    return run_all_pending(timeout_s)


class Measure:
    """One measurement window; also a decorator that opens a fresh window per call.

    Use it as ``with``/``async with`` (the window's span is the current span inside, so spans
    started there nest under it), call :meth:`start`/:meth:`stop` for windows that do not
    follow the block structure (the span is not made current, so such windows may overlap
    freely), or decorate a function or coroutine function. A window may be started again once
    stopped; it cannot be open twice at once.

    Created by :func:`measure`.
    """

    __slots__ = (
        "_monitor",
        "_owned",
        "_pending",
        "_result",
        "_snap",
        "_span",
        "_t_ns",
        "_token",
        "attributes",
        "config",
        "name",
        "tracer_provider",
    )

    def __init__(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue],
        config: CarbonConfig | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.config = config
        self.tracer_provider = tracer_provider
        self._result: Measurement | None = None
        self._pending: _Ending | None = None
        self._monitor: EnergyMonitor | None = None
        self._owned = False
        self._span: Span | None = None
        self._snap: Snapshot | None = None
        self._t_ns = 0
        self._token: object | None = None

    # ------------------------------------------------------------------ begin / end
    @property
    def open(self) -> bool:
        """True between start and stop."""
        return self._t_ns != 0

    def start(self) -> Measure:
        """Open the window (its span is a child of the current span, not made current)."""
        if self._t_ns:
            raise RuntimeError(
                f"hf-eco2ai: measure({self.name!r}) is already open; "
                "use one measure() per window (a decorator opens one per call)"
            )
        self._t_ns = time.monotonic_ns()
        try:
            monitor, tracer, identity, owned = _resolve(self.config, self.tracer_provider)
        except Exception as exc:
            self._failed("start", exc)
            return self
        self._monitor, self._owned = monitor, owned
        try:
            attrs: dict[str, AttributeValue] = dict(identity)
            attrs.update(self.attributes)
            self._span = tracer.start_span(self.name, kind=SpanKind.INTERNAL, attributes=attrs)
            self._snap = monitor.snapshot()
            self._t_ns = time.monotonic_ns()
        except Exception as exc:
            self._failed("start", exc)
            self._release()
        return self

    def stop(self, error: BaseException | None = None) -> Measurement | None:
        """Close the window: end its span and return (and keep in :attr:`result`) its numbers.

        ``error`` marks the span failed (status ERROR, ``error.type``, the exception recorded).
        Returns None when the window was not open.
        """
        if not self._t_ns:
            return None
        self._end(error, defer=False)
        return self.result

    def _end(self, error: BaseException | None, *, defer: bool) -> None:
        """Close the window.

        A recorded span's window is finished (numbers, attributes, ``span.end`` at the window's
        end time) by the sampler thread when ``defer`` and the window shares a running sampler,
        else here. A span that does not record ends here, and the numbers are computed on first
        use of :attr:`result` (both ends are immutable snapshots).
        """
        end_ns = time.monotonic_ns()
        end_wall = _wall_ns()
        monitor, span, snap = self._monitor, self._span, self._snap
        ends: WindowEnds | None = None
        result: Measurement | None = None
        pending: _Ending | None = None
        try:
            try:
                if monitor is not None and snap is not None:
                    if self._owned:
                        monitor.sampler.tick()  # the window ends on a fresh reading
                        end_ns, end_wall = time.monotonic_ns(), _wall_ns()
                    ends = (self.name, snap, self._t_ns, monitor.snapshot(), end_ns)
            except Exception as exc:
                self._failed("end", exc)
                ends = None
            if span is not None:
                if error is not None:
                    record_error(span, error, end_wall)  # on this thread: frames not kept
                if ends is not None and span.is_recording():
                    ending = _Ending(ends, span, end_wall)
                    span = None  # the job ends it
                    if (
                        defer
                        and not self._owned
                        and monitor is not None
                        and monitor.sampler.call_soon(ending)
                    ):
                        pending = ending
                    else:
                        result = ending.finish()
                else:
                    span.end(end_time=end_wall)
        except Exception as exc:
            self._failed("end", exc)
        finally:
            self._release()
            self._span = self._snap = None
            if result is None and pending is None:
                if ends is None:
                    result = self._unmeasured(end_ns)
                else:
                    pending = _Ending(ends, None, None)
            self._result, self._pending = result, pending
            self._t_ns = 0

    @property
    def result(self) -> Measurement | None:
        """The last completed window (for a decorator: the latest call's), else None.

        A window still being finished on the sampler thread is finished now, on this thread
        (its span ended), if the sampler thread has not done it yet.
        """
        result = self._result
        if result is None:
            pending = self._pending
            if pending is not None:
                result = pending.finish()
                self._result, self._pending = result, None
        return result

    def _unmeasured(self, end_ns: int) -> Measurement:
        return unmeasured(self.name, self._t_ns, end_ns)

    def _release(self) -> None:
        monitor, owned = self._monitor, self._owned
        self._monitor, self._owned = None, False
        if owned and monitor is not None:
            try:
                release_monitor(monitor)
            except Exception as exc:
                self._failed("release", exc)

    def _failed(self, where: str, exc: Exception) -> None:
        _failed(self.name, where, exc)

    # ------------------------------------------------------------------ context managers
    def __enter__(self) -> Measure:
        self.start()
        span = self._span
        if span is not None:
            try:
                self._token = otel_context.attach(trace.set_span_in_context(span))
            except Exception as exc:
                self._failed("start", exc)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception as err:
                self._failed("end", err)
        if self._t_ns:
            self._end(exc, defer=True)

    async def __aenter__(self) -> Measure:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # ------------------------------------------------------------------ decorator
    def _fresh(self) -> Measure:
        return Measure(self.name, self.attributes, self.config, self.tracer_provider)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``func`` (sync or ``async def``): each call is measured in a fresh window.

        The decorated function's ``window`` attribute is this object; its :attr:`result` is
        the latest completed call's (with concurrent calls, whichever ended last).
        """
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"hf-eco2ai: measure({self.name!r}) cannot decorate the generator function "
                f"{func.__qualname__}; use 'with measure(...)' inside it"
            )
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                window = self._fresh()
                try:
                    async with window:
                        return await func(*args, **kwargs)
                finally:
                    self._result, self._pending = window._result, window._pending

            run_async.window = self  # type: ignore[attr-defined]
            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            window = self._fresh()
            try:
                with window:
                    return func(*args, **kwargs)
            finally:
                self._result, self._pending = window._result, window._pending

        run.window = self  # type: ignore[attr-defined]
        return run

    # ------------------------------------------------------------------ results
    def _value(self, field: str) -> Any:
        result = self.result
        return getattr(result, field) if result is not None else NAN

    @property
    def energy_j(self) -> float:
        """Attributed energy of the last completed window (J); NaN before the first ends."""
        return float(self._value("energy_j"))

    @property
    def emissions_g(self) -> float:
        """Emissions of the last completed window (g CO2e); NaN before the first ends."""
        return float(self._value("emissions_g"))

    @property
    def duration_s(self) -> float:
        """Duration of the last completed window (s); NaN before the first ends."""
        return float(self._value("duration_s"))

    @property
    def devices(self) -> Mapping[str, float]:
        """``hw.id`` → joules drawn in the last completed window (see :class:`Measurement`)."""
        result = self.result
        return result.devices if result is not None else {}

    def __repr__(self) -> str:
        state = "open" if self._t_ns else "closed"
        return f"<hf_eco2ai.measure {self.name!r} {state} result={self.result!r}>"


def measure(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    config: CarbonConfig | None = None,
    tracer_provider: TracerProvider | None = None,
    **kw_attributes: Any,
) -> Measure:
    """A measurement window named ``name`` (``with``, ``async with`` or decorator).

    Args:
        name: the span name.
        attributes: span attributes whose keys are not Python identifiers
            (``{"data.split": "test"}``); ``**kw_attributes`` add more (``split="test"``).
            Values other than str/bool/int/float (or sequences of them) are stored as ``str``.
        config: used only when not instrumented, to build the process-wide monitor
            (default :meth:`CarbonConfig.from_env`); while instrumented the running one counts.
        tracer_provider: the provider of the window's span (default: the instrumentor's, else
            the global one).

    Example:
        >>> window = measure("eval", {"data.split": "test"}, batch_size=8)
        >>> window.name, dict(window.attributes)
        ('eval', {'data.split': 'test', 'batch_size': 8})
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"hf-eco2ai: measure() needs a non-empty span name, got {name!r}")
    merged: dict[str, AttributeValue] = {}
    for key, value in {**(attributes or {}), **kw_attributes}.items():
        merged[str(key)] = _attribute(value)
    return Measure(name, merged, config, tracer_provider)
