"""Issue 14 §1 acceptance: the job scope of the same work, alone and next to a busy neighbour.

Real psutil CPU times, the CPU TDP model, a neighbour process outside this tree spinning on one
core (``benchmarks/shared_host.py``). Robust on a loaded machine by construction: the job scope
is ``TDP x (job CPU s) x ((1 - f) / CPUs + f x dt / busy s)``, so per CPU second of the job it
moves by at most ``1 + f x (CPUs - 1)`` (1.19 on 2 CPUs) whatever else runs; no timing threshold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_job_scope_is_stable_when_a_neighbour_keeps_a_core_busy() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import shared_host
    finally:
        sys.path.remove(str(BENCH))
    kwargs = {"work": 5_000_000, "interval_s": 0.1, "cpu_tdp": 20.0}
    alone = shared_host.run(neighbour=False, **kwargs)
    shared = shared_host.run(neighbour=True, **kwargs)
    assert alone["job_cpu_j"] > 0 and shared["job_cpu_j"] > 0
    # per CPU second of the job: the same work can take more CPU time next to a neighbour
    # (caches, SMT siblings: 0.24 s alone vs 0.43 s shared, seen on a loaded 2-vCPU VM), and the
    # job is rightly charged for it; what the neighbour must not move is the charge per second
    per_cpu_s = [r["job_cpu_j"] / r["process_cpu_s"] for r in (alone, shared)]
    ratio = max(per_cpu_s) / min(per_cpu_s)
    assert ratio <= 1.5, (alone, shared)
    # the host scope shows the neighbour: most of the busy CPU time was not ours
    assert shared["other_cpu_share"] is not None and shared["other_cpu_share"] > 0.2
    assert shared["host_cpu_j"] > 1.25 * shared["job_cpu_j"]
    assert shared["note"] is not None and shared["note"].startswith("host was shared: ")
