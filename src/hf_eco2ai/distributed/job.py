"""Job-wide run totals, exchanged through the default process group's key-value store."""

from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from opentelemetry.util.types import AttributeValue

from hf_eco2ai.distributed.ranks import RankInfo

if TYPE_CHECKING:
    from hf_eco2ai.energy_windows import EnergyWindow

_LOG = logging.getLogger("hf_eco2ai.distributed")


JOB_PREFIX = "hf_eco2ai.job."
DEFAULT_JOB_TIMEOUT_S = 60.0
"""How long global rank 0 waits at the end of a run for the other ranks' totals."""


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
