"""Distributed training: which rank this process is, and job-wide totals without double counting.

Policy (see ``docs/distributed.md``): every rank instruments its own training and measures the
GPUs it owns; host CPU and RAM are measured by **local rank 0 only**. Summing ``hw.energy`` (or
``hf_eco2ai.energy``) over all ranks of a job therefore counts every device exactly once.

Rank facts are resolved per field, first source wins:

1. ``torch.distributed`` when it is imported and initialised (``rank``, ``world_size``);
2. framework state handed in by the integration (Trainer ``args.process_index`` …, Lightning
   ``trainer.global_rank`` …);
3. the environment: torchrun / accelerate / Lightning (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
   ``LOCAL_WORLD_SIZE``), SLURM (``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS``,
   ``SLURM_NTASKS_PER_NODE``), Open MPI (``OMPI_COMM_WORLD_*``), MPICH / Intel MPI (``PMI_*``).

``host.name`` is the ``host.name`` of ``OTEL_RESOURCE_ATTRIBUTES`` when set (the standard
OpenTelemetry override), else :func:`socket.gethostname`.

Identity attributes (``hf_eco2ai.rank``, ``hf_eco2ai.local_rank``, ``hf_eco2ai.world_size``,
``host.name``) belong in the Resource. hf-eco2ai usually meets providers that are already built
(global ones under ``opentelemetry-instrument``), whose Resource it cannot change, so a
:class:`~hf_eco2ai.telemetry.session.TelemetrySession` adds them to every span and data point
it emits (:class:`IdentityTracer`, :class:`IdentityMeter`) unless the provider's Resource
already carries ``hf_eco2ai.rank`` (built with :func:`distributed_resource`).

Job totals: :class:`JobAccounting` exchanges each rank's run totals through the key-value store
of the default process group (the one torchrun / accelerate / Lightning created, no extra group).
Unlike a collective, a store exchange cannot deadlock when some ranks are not instrumented:
ranks announce themselves when the run starts, and global rank 0 waits (bounded) only for the
ranks that did.

Example:
    >>> info = rank_info(environ={"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4",
    ...                           "LOCAL_WORLD_SIZE": "2",
    ...                           "OTEL_RESOURCE_ATTRIBUTES": "host.name=node-b"}, use_torch=False)
    >>> info.rank, info.local_rank, info.world_size, info.local_world_size, info.source
    (3, 1, 4, 2, 'env:torchrun')
    >>> info.attributes()["host.name"], info.measures_host
    ('node-b', False)
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

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

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource

    from hf_eco2ai.monitor import EnergyMonitor
    from hf_eco2ai.telemetry.spans import RunTelemetry
    from hf_eco2ai.windows import EnergyWindow

__all__ = [
    "IDENTITY_ATTRIBUTES",
    "IdentityMeter",
    "IdentityTracer",
    "JobAccounting",
    "JobTotals",
    "RankContribution",
    "RankInfo",
    "distributed_resource",
    "finish_job",
    "host_name",
    "rank_info",
    "resource_has_identity",
    "warn_if_host_measured_off_rank_zero",
]

_LOG = logging.getLogger(__name__)

RANK = "hf_eco2ai.rank"
LOCAL_RANK = "hf_eco2ai.local_rank"
WORLD_SIZE = "hf_eco2ai.world_size"
HOST_NAME = "host.name"
IDENTITY_ATTRIBUTES = (RANK, LOCAL_RANK, WORLD_SIZE, HOST_NAME)
"""The identity attributes, on every span and data point (or in the Resource)."""

JOB_PREFIX = "hf_eco2ai.job."
DEFAULT_JOB_TIMEOUT_S = 60.0
"""How long global rank 0 waits at the end of a run for the other ranks' totals."""

_HOST_TYPES = frozenset({"cpu", "memory"})
_HOST_WARNED: weakref.WeakSet[EnergyMonitor] = weakref.WeakSet()


# =========================================================================== rank facts
@dataclass(frozen=True)
class RankInfo:
    """Who this process is in a (possibly) distributed job.

    ``local_world_size`` is None when no source tells it. ``source`` names where ``rank`` came
    from (``torch.distributed``, ``framework``, ``env:torchrun``, ``env:slurm``, ``env:openmpi``,
    ``env:pmi`` or ``default``).

    Example:
        >>> RankInfo().attributes()["hf_eco2ai.world_size"]
        1
        >>> RankInfo(rank=2, local_rank=0, world_size=4).is_global_zero
        False
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int | None = None
    host_name: str = field(default_factory=lambda: host_name())
    source: str = "default"

    @property
    def distributed(self) -> bool:
        """True when the job has more than one rank."""
        return self.world_size > 1

    @property
    def is_global_zero(self) -> bool:
        """True on global rank 0 (the rank that reports job totals)."""
        return self.rank == 0

    @property
    def measures_host(self) -> bool:
        """True on local rank 0, the rank that measures the host's CPU and RAM."""
        return self.local_rank == 0

    def attributes(self) -> dict[str, AttributeValue]:
        """The identity attributes (``hf_eco2ai.rank``, ``…local_rank``, ``…world_size``, ``host.name``)."""
        return {
            RANK: self.rank,
            LOCAL_RANK: self.local_rank,
            WORLD_SIZE: self.world_size,
            HOST_NAME: self.host_name,
        }


def host_name(environ: Mapping[str, str] | None = None) -> str:
    """``host.name`` from ``OTEL_RESOURCE_ATTRIBUTES`` when set there, else the host name.

    >>> host_name({"OTEL_RESOURCE_ATTRIBUTES": "service.name=x,host.name=node%2Da"})
    'node-a'
    """
    env = os.environ if environ is None else environ
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == HOST_NAME and value.strip():
            return unquote(value.strip())
    try:
        return socket.gethostname() or "unknown"
    except OSError:  # pragma: no cover - gethostname does not fail on supported platforms
        return "unknown"


# Environment sources, in order: (source name, rank, local rank, world size, local world size).
_ENV_SOURCES: tuple[tuple[str, str, str, str, str], ...] = (
    ("env:torchrun", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"),
    ("env:slurm", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE"),
    (
        "env:openmpi",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),
    ("env:pmi", "PMI_RANK", "MPI_LOCALRANKID", "PMI_SIZE", "MPI_LOCALNRANKS"),
)

_FIELDS = ("rank", "local_rank", "world_size", "local_world_size")


def _int(value: object) -> int | None:
    """A non-negative int from an int or env string (SLURM's ``"2(x3)"`` reads as 2), else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    text = str(value).strip()
    digits = "".join(itertools.takewhile(str.isdigit, text))
    return int(digits) if digits else None


def _torch_facts() -> dict[str, int]:
    """Rank and world size from an initialised default process group (never imports torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return {}
    try:
        if dist.is_available() and dist.is_initialized():
            return {"rank": int(dist.get_rank()), "world_size": int(dist.get_world_size())}
    except Exception:
        _LOG.debug("hf-eco2ai: torch.distributed did not answer", exc_info=True)
    return {}


def rank_info(
    framework: Mapping[str, int | None] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_torch: bool = True,
) -> RankInfo:
    """Resolve this process's rank facts (torch.distributed, then ``framework``, then env).

    Args:
        framework: facts the training framework knows, with keys ``rank``, ``local_rank``,
            ``world_size``, ``local_world_size`` (missing or None: unknown).
        environ: the environment (default ``os.environ``).
        use_torch: ask ``torch.distributed`` when it is imported and initialised.

    Example:
        >>> rank_info({"rank": 1, "local_rank": 1, "world_size": 2}, environ={}).source
        'framework'
        >>> slurm = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
        ...          "SLURM_NTASKS_PER_NODE": "4(x2)"}
        >>> info = rank_info(environ=slurm, use_torch=False)
        >>> info.rank, info.local_rank, info.world_size, info.local_world_size, info.source
        (5, 1, 8, 4, 'env:slurm')
    """
    env = os.environ if environ is None else environ
    sources: list[tuple[str, dict[str, int | None]]] = []
    if use_torch:
        sources.append(("torch.distributed", dict(_torch_facts())))
    if framework:
        sources.append(("framework", {k: _int(framework.get(k)) for k in _FIELDS}))
    for name, *keys in _ENV_SOURCES:
        sources.append((name, {f: _int(env.get(k)) for f, k in zip(_FIELDS, keys, strict=True)}))
    values: dict[str, int] = {}
    origin = "default"
    for name, facts in sources:
        for key in _FIELDS:
            value = facts.get(key)
            if key not in values and value is not None:
                values[key] = value
                if key == "rank":
                    origin = name
    world = max(1, values.get("world_size", 1))
    rank = values.get("rank", 0)
    local_world = values.get("local_world_size")
    if local_world is not None and local_world < 1:
        local_world = None
    if "local_rank" in values:
        local_rank = values["local_rank"]
    elif world == 1:
        local_rank = 0
    elif local_world:
        local_rank = rank % local_world
    else:
        local_rank = 0  # unknown: assume one rank per host
    if world == 1 and local_world is None:
        local_world = 1
    return RankInfo(rank, local_rank, world, local_world, host_name(env), origin)


# =========================================================================== identity on spans and points
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


def distributed_resource(
    info: RankInfo | None = None, attributes: Mapping[str, AttributeValue] | None = None
) -> Resource:
    """A Resource with this process's identity, for users who build their own providers.

    Merges, lowest precedence first: the SDK defaults and ``OTEL_RESOURCE_ATTRIBUTES`` /
    ``OTEL_SERVICE_NAME`` (``Resource.create``), then ``host.name``, ``process.pid`` and the
    ``hf_eco2ai.*`` rank attributes, then ``attributes``. With such a provider hf-eco2ai does
    not repeat the identity on every data point. Needs ``opentelemetry-sdk``.

    Example:
        >>> resource = distributed_resource(RankInfo(rank=1, local_rank=1, world_size=2,
        ...                                          host_name="node-a"))
        >>> resource.attributes["hf_eco2ai.rank"], resource.attributes["host.name"]
        (1, 'node-a')
    """
    try:
        from opentelemetry.sdk.resources import Resource
    except ImportError as exc:  # pragma: no cover - the SDK is installed with any exporter
        raise ImportError("distributed_resource() needs opentelemetry-sdk") from exc
    info = info if info is not None else rank_info()
    attrs: dict[str, AttributeValue] = {"process.pid": os.getpid()}
    attrs.update(info.attributes())
    attrs.update(attributes or {})
    return Resource.create(attrs)


def warn_if_host_measured_off_rank_zero(monitor: EnergyMonitor, info: RankInfo) -> bool:
    """Warn (once per monitor) when a non-zero local rank measures host CPU/RAM; True if so.

    That happens when the monitor was built before the local rank was known (e.g. processes
    started by ``torch.multiprocessing.spawn``, which sets no ``LOCAL_RANK``).
    """
    if info.measures_host or monitor in _HOST_WARNED:
        return False
    host = [d for d in monitor.devices if d.hw_type.value in _HOST_TYPES]
    if not host:
        return False
    _HOST_WARNED.add(monitor)
    _LOG.warning(
        "hf-eco2ai: local rank %d measures the host's CPU/RAM (%s), so the node may be counted "
        "more than once; set LOCAL_RANK before instrumenting (torchrun, accelerate and Lightning "
        "do), or track_cpu/track_ram=false on this rank",
        info.local_rank,
        ", ".join(d.hw_id for d in host),
    )
    return True


# =========================================================================== job totals
@dataclass(frozen=True)
class RankContribution:
    """One rank's run totals, as exchanged between ranks (JSON-serialisable).

    Example:
        >>> c = RankContribution(1, 1, "node-a", 10.0, 0.5, {"gpu": 10.0}, {"gpu": 0.5}, 32, 0)
        >>> RankContribution.from_json(c.to_json()) == c
        True
    """

    rank: int
    local_rank: int
    host: str
    energy_j: float
    emissions_g: float
    energy_by_type: Mapping[str, float]
    emissions_by_type: Mapping[str, float]
    samples: int
    tokens: int

    @classmethod
    def from_window(
        cls, window: EnergyWindow, info: RankInfo, samples: int, tokens: int
    ) -> RankContribution:
        """The contribution of a measured run window."""
        return cls(
            info.rank,
            info.local_rank,
            info.host_name,
            window.energy_j,
            window.emissions_g,
            dict(window.energy_by_type),
            dict(window.emissions_by_type),
            int(samples),
            int(tokens),
        )

    def to_json(self) -> str:
        """Serialise for the store."""
        return json.dumps(
            {
                "rank": self.rank,
                "local_rank": self.local_rank,
                "host": self.host,
                "energy_j": self.energy_j,
                "emissions_g": self.emissions_g,
                "energy_by_type": dict(self.energy_by_type),
                "emissions_by_type": dict(self.emissions_by_type),
                "samples": self.samples,
                "tokens": self.tokens,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RankContribution:
        """Parse what :meth:`to_json` wrote."""
        d = json.loads(text)
        return cls(
            int(d["rank"]),
            int(d["local_rank"]),
            str(d["host"]),
            float(d["energy_j"]),
            float(d["emissions_g"]),
            {str(k): float(v) for k, v in d["energy_by_type"].items()},
            {str(k): float(v) for k, v in d["emissions_by_type"].items()},
            int(d["samples"]),
            int(d["tokens"]),
        )


@dataclass(frozen=True)
class JobTotals:
    """Job-wide totals: the sum of every reporting rank's contribution.

    Example:
        >>> a = RankContribution(0, 0, "h", 10.0, 1.0, {"cpu": 4.0, "gpu": 6.0}, {}, 8, 0)
        >>> b = RankContribution(1, 1, "h", 6.0, 0.5, {"gpu": 6.0}, {}, 8, 0)
        >>> totals = JobTotals.combine([a, b], world_size=2)
        >>> totals.energy_j, totals.energy_by_type["gpu"], totals.hosts, totals.missing
        (16.0, 12.0, 1, ())
    """

    world_size: int
    ranks: tuple[int, ...]
    hosts: int
    energy_j: float
    emissions_g: float
    energy_by_type: Mapping[str, float]
    emissions_by_type: Mapping[str, float]
    samples: int
    tokens: int

    @property
    def missing(self) -> tuple[int, ...]:
        """Ranks of the job that did not report (not instrumented, crashed, or too late)."""
        return tuple(r for r in range(self.world_size) if r not in self.ranks)

    @classmethod
    def combine(cls, contributions: Iterable[RankContribution], world_size: int) -> JobTotals:
        """Sum contributions (one per rank; a repeated rank is counted once)."""
        by_rank: dict[int, RankContribution] = {}
        for c in contributions:
            by_rank.setdefault(c.rank, c)
        parts = [by_rank[r] for r in sorted(by_rank)]
        energy: dict[str, float] = {}
        emissions: dict[str, float] = {}
        for c in parts:
            for key, value in c.energy_by_type.items():
                energy[key] = energy.get(key, 0.0) + value
            for key, value in c.emissions_by_type.items():
                emissions[key] = emissions.get(key, 0.0) + value
        return cls(
            world_size=world_size,
            ranks=tuple(sorted(by_rank)),
            hosts=len({c.host for c in parts}),
            energy_j=sum(c.energy_j for c in parts),
            emissions_g=sum(c.emissions_g for c in parts),
            energy_by_type=energy,
            emissions_by_type=emissions,
            samples=sum(c.samples for c in parts),
            tokens=sum(c.tokens for c in parts),
        )

    def attributes(self) -> dict[str, AttributeValue]:
        """The ``hf_eco2ai.job.*`` attributes of global rank 0's run span."""
        attrs: dict[str, AttributeValue] = {
            JOB_PREFIX + "energy.joules": self.energy_j,
            JOB_PREFIX + "emissions.grams": self.emissions_g,
            JOB_PREFIX + "world_size": self.world_size,
            JOB_PREFIX + "ranks": len(self.ranks),
            JOB_PREFIX + "hosts": self.hosts,
            JOB_PREFIX + "training.samples": self.samples,
            JOB_PREFIX + "complete": not self.missing,
        }
        if self.tokens:
            attrs[JOB_PREFIX + "training.tokens"] = self.tokens
        if self.samples:
            attrs[JOB_PREFIX + "energy_per_sample.joules"] = self.energy_j / self.samples
        for hw_type, joules in sorted(self.energy_by_type.items()):
            attrs[f"{JOB_PREFIX}energy.{hw_type}.joules"] = joules
        for hw_type, grams in sorted(self.emissions_by_type.items()):
            attrs[f"{JOB_PREFIX}emissions.{hw_type}.grams"] = grams
        if self.missing:
            attrs[JOB_PREFIX + "missing_ranks"] = list(self.missing)
        return attrs

    def summary_line(self, framework: str) -> str:
        """One line for the log of global rank 0."""
        parts = ", ".join(f"{t} {j:.1f} J" for t, j in sorted(self.energy_by_type.items()))
        line = (
            f"hf-eco2ai: {framework} job ({len(self.ranks)}/{self.world_size} ranks on "
            f"{self.hosts} host(s)) used {self.energy_j:.1f} J ({parts or 'no devices'}), "
            f"{self.emissions_g:.4f} gCO2e"
        )
        if self.samples:
            line += f", {self.energy_j / self.samples:.4f} J/sample"
        if self.missing:
            line += f"; ranks {list(self.missing)} did not report"
        return line


class Store(Protocol):
    """The part of ``torch.distributed.Store`` :class:`JobAccounting` uses."""

    def set(self, key: str, value: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def check(self, keys: list[str]) -> bool: ...

    def wait(self, keys: list[str], timeout: timedelta) -> None: ...

    def delete_key(self, key: str) -> bool: ...


def default_store() -> Store | None:
    """The key-value store of the initialised default process group, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        from torch.distributed import distributed_c10d

        store: Store = distributed_c10d._get_default_store()
        return store
    except Exception:
        _LOG.debug("hf-eco2ai: no default process-group store", exc_info=True)
        return None


_RUN_COUNTERS: dict[str, itertools.count[int]] = {}
_RUN_COUNTERS_LOCK = threading.Lock()


def _next_run_id(framework: str) -> int:
    with _RUN_COUNTERS_LOCK:
        counter = _RUN_COUNTERS.setdefault(framework, itertools.count())
        return next(counter)


class JobAccounting:
    """Cross-rank totals of one run, exchanged through the process group's key-value store.

    :meth:`start` (at run start, every rank) announces the rank; :meth:`finish` (at run end,
    every rank) publishes the rank's :class:`RankContribution`, and on global rank 0 waits for
    the announced ranks (at most ``timeout_s``) and returns the :class:`JobTotals`. No
    collective is issued, so a rank that is not instrumented, or fails, cannot make the others
    hang; it is reported as missing. Keys are namespaced by framework and the per-process run
    number, which is the same on every rank when every rank runs the same training.

    Example:
        >>> import torch.distributed as dist
        >>> store = dist.HashStore()
        >>> one = JobAccounting(RankInfo(1, 1, 2, 2, "h"), store, "demo/0")
        >>> zero = JobAccounting(RankInfo(0, 0, 2, 2, "h"), store, "demo/0")
        >>> one.start(); zero.start()
        >>> one.finish(RankContribution(1, 1, "h", 5.0, 0.1, {"gpu": 5.0}, {"gpu": 0.1}, 4, 0))
        >>> totals = zero.finish(RankContribution(0, 0, "h", 7.0, 0.2, {"cpu": 7.0}, {"cpu": 0.2}, 4, 0))
        >>> totals.energy_j, totals.samples, totals.missing
        (12.0, 8, ())
    """

    def __init__(
        self,
        info: RankInfo,
        store: Store,
        run_key: str,
        *,
        timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
    ) -> None:
        self.info = info
        self.store = store
        self.prefix = f"hf_eco2ai/job/{run_key}"
        self.timeout_s = float(timeout_s)

    @classmethod
    def begin(
        cls, info: RankInfo, framework: str, *, timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    ) -> JobAccounting | None:
        """Announce this rank when ``torch.distributed`` runs a multi-rank job, else None.

        Never raises: a failure means no job totals, logged at debug level.
        """
        if not info.distributed:
            return None
        store = default_store()
        if store is None:
            return None
        try:
            job = cls(info, store, f"{framework}/{_next_run_id(framework)}", timeout_s=timeout_s)
            job.start()
            return job
        except Exception:
            _LOG.debug("hf-eco2ai: could not announce this rank for job totals", exc_info=True)
            return None

    def _key(self, kind: str, rank: int) -> str:
        return f"{self.prefix}/{kind}/{rank}"

    def start(self) -> None:
        """Announce this rank (at run start)."""
        self.store.set(self._key("joined", self.info.rank), "1")

    def finish(
        self, contribution: RankContribution | Callable[[], RankContribution]
    ) -> JobTotals | None:
        """Publish this rank's totals; on global rank 0 collect and return the job's.

        ``contribution`` may be a callable: global rank 0 calls it only after the other ranks
        have reported, so its own share ends when its run span ends, not before the wait.
        """
        if not self.info.is_global_zero:
            own = contribution() if callable(contribution) else contribution
            self.store.set(self._key("done", self.info.rank), own.to_json())
            return None
        others = [r for r in range(self.info.world_size) if r != self.info.rank]
        joined = [r for r in others if self.store.check([self._key("joined", r)])]
        done_keys = [self._key("done", r) for r in joined]
        if done_keys:
            try:
                self.store.wait(done_keys, timedelta(seconds=self.timeout_s))
            except Exception:
                _LOG.warning(
                    "hf-eco2ai: not every rank reported its totals within %.0f s; job totals "
                    "are partial",
                    self.timeout_s,
                )
        contributions = []
        for rank, key in zip(joined, done_keys, strict=True):
            try:
                if self.store.check([key]):
                    contributions.append(RankContribution.from_json(self.store.get(key)))
            except Exception:
                _LOG.debug("hf-eco2ai: unreadable totals of rank %d", rank, exc_info=True)
        self._cleanup([self.info.rank, *joined])
        contributions.append(contribution() if callable(contribution) else contribution)
        return JobTotals.combine(contributions, self.info.world_size)

    def _cleanup(self, ranks: Iterable[int]) -> None:
        for rank in ranks:
            for kind in ("joined", "done"):
                try:
                    self.store.delete_key(self._key(kind, rank))
                except Exception:
                    _LOG.debug("hf-eco2ai: could not delete a store key", exc_info=True)


def finish_job(
    job: JobAccounting | None, run: RunTelemetry, info: RankInfo, framework: str
) -> JobTotals | None:
    """End-of-run exchange for a framework integration; never raises.

    Publishes this rank's run totals so far (global rank 0: after the others reported); on
    global rank 0 puts the job totals on the open run span (:meth:`RunTelemetry.set_run_attributes`) and logs one summary line.
    """
    if job is None or not run.running:
        return None
    try:

        def contribution() -> RankContribution:
            window = run.run_window()
            if window is None:  # pragma: no cover - the run is open (checked above)
                raise RuntimeError("no open run")
            return RankContribution.from_window(
                window, info, run.counters.run_samples, run.counters.run_tokens
            )

        started = time.monotonic()
        totals = job.finish(contribution)
        if totals is None:
            return None
        run.set_run_attributes(totals.attributes())
        _LOG.info("%s", totals.summary_line(framework))
        _LOG.debug("hf-eco2ai: job totals collected in %.3f s", time.monotonic() - started)
        return totals
    except Exception:
        _LOG.warning("hf-eco2ai: could not compute job totals", exc_info=True)
        return None
