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
:class:`~hf_eco2ai.telemetry.session.TelemetrySession` merges them into every span and data
point it creates unless the provider's Resource already carries ``hf_eco2ai.rank`` (built with
:func:`distributed_resource`).

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

from hf_eco2ai.distributed.job import (
    DEFAULT_JOB_TIMEOUT_S,
    JOB_PREFIX,
    JobAccounting,
    JobTotals,
    RankContribution,
    default_store,
)
from hf_eco2ai.distributed.ranks import (
    HOST_NAME,
    IDENTITY_ATTRIBUTES,
    LOCAL_RANK,
    RANK,
    WORLD_SIZE,
    RankInfo,
    distributed_resource,
    host_name,
    rank_info,
    warn_if_host_measured_off_rank_zero,
)

__all__ = [
    "DEFAULT_JOB_TIMEOUT_S",
    "HOST_NAME",
    "IDENTITY_ATTRIBUTES",
    "JOB_PREFIX",
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "JobAccounting",
    "JobTotals",
    "RankContribution",
    "RankInfo",
    "default_store",
    "distributed_resource",
    "host_name",
    "rank_info",
    "warn_if_host_measured_off_rank_zero",
]
