"""Rank facts: who this process is in a distributed job, and the host it runs on.

See :mod:`hf_eco2ai.distributed` for the policy and the resolution order.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from hf_eco2ai.energy_monitor import EnergyMonitor
_LOG = logging.getLogger("hf_eco2ai.distributed")


RANK = "hf_eco2ai.rank"
LOCAL_RANK = "hf_eco2ai.local_rank"
WORLD_SIZE = "hf_eco2ai.world_size"
HOST_NAME = "host.name"
IDENTITY_ATTRIBUTES = (RANK, LOCAL_RANK, WORLD_SIZE, HOST_NAME)
"""The identity attributes, on every span and data point (or in the Resource)."""


_HOST_TYPES = frozenset({"cpu", "memory"})
_HOST_WARNED: weakref.WeakSet[EnergyMonitor] = weakref.WeakSet()


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
