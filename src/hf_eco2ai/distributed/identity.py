"""Rank and host identity on every span and data point when the provider's Resource lacks it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    Observation,
    UpDownCounter,
)
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from hf_eco2ai.distributed.ranks import RANK

if TYPE_CHECKING:
    from opentelemetry.context import Context

_LOG = logging.getLogger("hf_eco2ai.distributed")


def resource_has_identity(provider: object) -> bool:
    """True when ``provider``'s Resource already carries ``hf_eco2ai.rank``.

    Works for the SDK's ``TracerProvider`` (``.resource``) and ``MeterProvider``; any other
    provider (the API's no-op and proxy providers) has no Resource we can read.
    """
    resource = getattr(provider, "resource", None)
    if resource is None:
        sdk_config = getattr(provider, "_sdk_config", None)
        resource = getattr(sdk_config, "resource", None)
    attributes = getattr(resource, "attributes", None)
    return isinstance(attributes, Mapping) and RANK in attributes


IdentitySource = Callable[[], Mapping[str, AttributeValue]]


class IdentityTracer(Tracer):
    """A tracer that puts the identity attributes on every span it starts.

    ``identity`` is called at each span start, so a session can refresh the rank once the
    framework has initialised ``torch.distributed``. Explicit attributes win.

    Example:
        >>> from opentelemetry.trace import NoOpTracer
        >>> tracer = IdentityTracer(NoOpTracer(), lambda: {"hf_eco2ai.rank": 0})
        >>> tracer.start_span("x").is_recording()
        False
    """

    def __init__(self, tracer: Tracer, identity: IdentitySource) -> None:
        self._tracer = tracer
        self._identity = identity

    def _merge(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        merged: dict[str, Any] = dict(self._identity())
        if attributes:
            merged.update(attributes)
        return merged

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        """Start a span with the identity attributes (see :meth:`opentelemetry.trace.Tracer.start_span`)."""
        return self._tracer.start_span(
            name,
            context,
            kind,
            self._merge(attributes),
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # API: a private context-manager type
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        """Like :meth:`opentelemetry.trace.Tracer.start_as_current_span`, with identity attributes."""
        with self._tracer.start_as_current_span(
            name,
            context,
            kind,
            self._merge(attributes),
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


ObservableCallback = Callable[[CallbackOptions], Iterable[Observation]]


class IdentityMeter(Meter):
    """A meter whose asynchronous instruments add the identity attributes to every observation.

    Synchronous instruments are passed through unchanged (hf-eco2ai creates none). Explicit
    observation attributes win.

    Example:
        >>> from opentelemetry.metrics import NoOpMeter, Observation
        >>> meter = IdentityMeter(NoOpMeter("x"), lambda: {"hf_eco2ai.rank": 1})
        >>> cb = meter.wrap_callback(lambda options: [Observation(1.0, {"hw.type": "gpu"})])
        >>> dict(list(cb(None))[0].attributes)  # type: ignore[arg-type]
        {'hf_eco2ai.rank': 1, 'hw.type': 'gpu'}
    """

    def __init__(self, meter: Meter, identity: IdentitySource) -> None:
        super().__init__(
            getattr(meter, "name", "hf_eco2ai"),
            getattr(meter, "version", None),
            getattr(meter, "schema_url", None),
        )
        self._meter = meter
        self._identity = identity

    def wrap_callback(self, callback: Any) -> Any:
        """``callback`` with the identity merged into each observation's attributes."""
        if not callable(callback):  # a generator callback: passed through unchanged
            return callback

        def with_identity(options: CallbackOptions) -> Iterable[Observation]:
            identity = self._identity()
            out = []
            for obs in callback(options):
                attrs: dict[str, Any] = dict(identity)
                if obs.attributes:
                    attrs.update(obs.attributes)
                out.append(Observation(obs.value, attrs, obs.context))
            return out

        with_identity.__name__ = getattr(callback, "__name__", "callback")
        return with_identity

    def _callbacks(self, callbacks: Sequence[Any] | None) -> list[Any] | None:
        return None if callbacks is None else [self.wrap_callback(cb) for cb in callbacks]

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        """Pass-through."""
        return self._meter.create_counter(name, unit, description)

    def create_up_down_counter(
        self, name: str, unit: str = "", description: str = ""
    ) -> UpDownCounter:
        """Pass-through."""
        return self._meter.create_up_down_counter(name, unit, description)

    def create_histogram(
        self, name: str, unit: str = "", description: str = "", **kwargs: Any
    ) -> Histogram:
        """Pass-through."""
        return self._meter.create_histogram(name, unit, description, **kwargs)

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Any:
        """Pass-through."""
        return self._meter.create_gauge(name, unit, description)

    def create_observable_counter(
        self,
        name: str,
        callbacks: Sequence[Any] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableCounter:
        """An observable counter whose observations carry the identity attributes."""
        return self._meter.create_observable_counter(
            name, self._callbacks(callbacks), unit, description
        )

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[Any] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableGauge:
        """An observable gauge whose observations carry the identity attributes."""
        return self._meter.create_observable_gauge(
            name, self._callbacks(callbacks), unit, description
        )

    def create_observable_up_down_counter(
        self,
        name: str,
        callbacks: Sequence[Any] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableUpDownCounter:
        """An observable up-down counter whose observations carry the identity attributes."""
        return self._meter.create_observable_up_down_counter(
            name, self._callbacks(callbacks), unit, description
        )
