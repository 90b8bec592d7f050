"""Distributed runs on CPU (gloo): ``torchrun`` with the HF Trainer and with Lightning DDP.

Each rank runs ``tests/integration/scripts/ddp_train.py`` under ``python -m torch.distributed.run``
and writes the spans and metric points it exported to ``rank-<RANK>.json``. The tests check the
distributed policy end to end:

* every span and data point says which rank (and host) emitted it;
* each rank measures the GPU it owns (one synthetic GPU per rank, ``--fake-gpu``) and only local
  rank 0 reports host CPU/RAM (real discovery: RAPL or the TDP model, and the RAM model);
* global rank 0's run span carries job totals equal to the sum of the ranks' run spans;
* a simulated 2-node job (two torchrun groups on loopback with distinct ``host.name`` through
  ``OTEL_RESOURCE_ATTRIBUTES``) counts each node's CPU once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.otlp_receiver import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "integration" / "scripts" / "ddp_train.py"
TIMEOUT_S = 150

RUN_SPANS = {"hf": "transformers.trainer.train", "lightning": "lightning.trainer.fit"}
HOST_TYPES = {"cpu", "memory"}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "RANK", "LOCAL_", "WORLD_", "MASTER_", "SLURM_", "OMPI_"))
    }
    env.update(
        {
            "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL": "0.1",
            "OTEL_PYTHON_HF_ECO2AI_COUNTRY": "FR",
            "OTEL_PYTHON_HF_ECO2AI_WRITE_REPORT": "false",  # run reports are tested elsewhere
            "OTEL_SERVICE_NAME": "hf-eco2ai-ddp-test",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(REPO),
            "PYTHONWARNINGS": "ignore",
        }
    )
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    env.update(extra or {})
    return env


def _torchrun(
    args: Sequence[str],
    out: Path,
    *,
    nproc: int,
    port: int,
    nnodes: int = 1,
    node_rank: int = 0,
    env: dict[str, str] | None = None,
    log: Path,
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        str(SCRIPT),
        *args,
        "--out",
        str(out),
    ]
    handle = log.open("wb")
    return subprocess.Popen(
        cmd,
        cwd=str(out),
        env=env or _env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killed as a whole on timeout
    )


def _wait_all(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:  # the launcher and any straggling rank of its process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-6000:]
            pytest.fail(f"torchrun exited {proc.returncode}:\n{tail}")


def _load(out: Path, world: int) -> list[dict[str, Any]]:
    ranks = []
    for rank in range(world):
        path = out / f"rank-{rank}.json"
        assert path.exists(), f"rank {rank} wrote nothing"
        ranks.append(json.loads(path.read_text()))
    return ranks


def _run_span(data: dict[str, Any], framework: str) -> dict[str, Any]:
    runs = [s for s in data["spans"] if s["name"] == RUN_SPANS[framework]]
    assert len(runs) == 1, [s["name"] for s in data["spans"]]
    return runs[0]


def _hw_types(data: dict[str, Any]) -> dict[str, set[str]]:
    """hw.type -> hw.id of this rank's ``hw.energy`` points."""
    out: dict[str, set[str]] = {}
    for point in data["metrics"].get("hw.energy", []):
        out.setdefault(point["attributes"]["hw.type"], set()).add(point["attributes"]["hw.id"])
    return out


def _identity(data: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """The identity of a span/point: from its attributes, else from the resource."""
    keys = ("hf_eco2ai.rank", "hf_eco2ai.local_rank", "hf_eco2ai.world_size", "host.name")
    return {k: attrs.get(k, data["resource"].get(k)) for k in keys}


def _check_job(ranks: list[dict[str, Any]], framework: str) -> None:
    world = len(ranks)
    runs = [_run_span(d, framework)["attributes"] for d in ranks]
    job = runs[0]
    assert job["hf_eco2ai.job.ranks"] == world
    assert job["hf_eco2ai.job.world_size"] == world
    assert job["hf_eco2ai.job.complete"] is True
    for other in runs[1:]:
        assert not any(k.startswith("hf_eco2ai.job.") for k in other)
    total = sum(r["hf_eco2ai.energy.joules"] for r in runs)
    # each rank's share is measured right before its run span ends: equal up to that instant
    assert job["hf_eco2ai.job.energy.joules"] == pytest.approx(total, rel=0.02, abs=0.5)
    assert job["hf_eco2ai.job.emissions.grams"] == pytest.approx(
        sum(r["hf_eco2ai.emissions.grams"] for r in runs), rel=0.02, abs=1e-4
    )
    for hw in ("gpu", "cpu", "memory"):
        key = f"hf_eco2ai.energy.{hw}.joules"
        expected = sum(r.get(key, 0.0) for r in runs)
        assert job[f"hf_eco2ai.job.energy.{hw}.joules"] == pytest.approx(
            expected, rel=0.02, abs=0.5
        )
    assert job["hf_eco2ai.job.training.samples"] == sum(
        r["hf_eco2ai.training.samples"] for r in runs
    )
    assert job["hf_eco2ai.job.training.samples"] > 0


def _check_ranks(ranks: list[dict[str, Any]], framework: str, local_world: int) -> None:
    world = len(ranks)
    for rank, data in enumerate(ranks):
        local = rank % local_world
        assert data["rank_info"]["rank"] == rank
        assert data["rank_info"]["local_rank"] == local
        for span in data["spans"]:
            ident = _identity(data, span["attributes"])
            assert ident["hf_eco2ai.rank"] == rank, span["name"]
            assert ident["hf_eco2ai.local_rank"] == local
            assert ident["hf_eco2ai.world_size"] == world
        for name, points in data["metrics"].items():
            for point in points:
                ident = _identity(data, point["attributes"])
                assert ident["hf_eco2ai.rank"] == rank, name
        types = _hw_types(data)
        assert types["gpu"] == {f"GPU-fake-{local}"}  # the GPU this rank owns, nobody else's
        run = _run_span(data, framework)["attributes"]
        assert run["hf_eco2ai.energy.gpu.joules"] > 0
        if local == 0:
            assert set(types) >= HOST_TYPES, types
            # present on the rank that measures the host; not "> 0": a run of ~0.2 s may end
            # before the sampler's next tick (late on a loaded machine), and then its CPU share
            # is the idle one extrapolated from the tick before training began
            assert run["hf_eco2ai.energy.cpu.joules"] >= 0
        else:
            assert not HOST_TYPES & set(types), types
            assert "hf_eco2ai.energy.cpu.joules" not in run


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "ranks"
    out.mkdir()
    return out


@pytest.mark.parametrize("framework", ["hf", "lightning"])
def test_torchrun_two_ranks(framework: str, out_dir: Path) -> None:
    log = out_dir / "torchrun.log"
    proc = _torchrun(
        ["--framework", framework, "--fake-gpu"], out_dir, nproc=2, port=free_port(), log=log
    )
    _wait_all([proc], [log])
    ranks = _load(out_dir, 2)
    _check_ranks(ranks, framework, local_world=2)
    _check_job(ranks, framework)
    hosts = {_identity(d, _run_span(d, framework)["attributes"])["host.name"] for d in ranks}
    assert len(hosts) == 1
    if framework == "hf":
        names = [s["name"] for s in ranks[1]["spans"]]
        assert "transformers.trainer.evaluate" in names
        assert ranks[0]["spans"][0]["attributes"].get("hf_eco2ai.world_size") == 2
    else:
        validations = [s for s in ranks[1]["spans"] if s["name"] == "lightning.trainer.validation"]
        assert [v["attributes"]["hf_eco2ai.sanity_check"] for v in validations] == [True, False]


def test_two_simulated_nodes_count_each_cpu_once(out_dir: Path) -> None:
    """Two torchrun groups on loopback, ``host.name`` node-a / node-b, providers on our Resource."""
    port = free_port()
    procs, logs = [], []
    for node_rank, host in enumerate(("node-a", "node-b")):
        log = out_dir / f"node-{node_rank}.log"
        env = _env({"OTEL_RESOURCE_ATTRIBUTES": f"host.name={host}"})
        procs.append(
            _torchrun(
                ["--framework", "lightning", "--fake-gpu", "--resource"],
                out_dir,
                nproc=2,
                nnodes=2,
                node_rank=node_rank,
                port=port,
                env=env,
                log=log,
            )
        )
        logs.append(log)
    _wait_all(procs, logs)
    ranks = _load(out_dir, 4)
    _check_ranks(ranks, "lightning", local_world=2)
    _check_job(ranks, "lightning")
    for rank, data in enumerate(ranks):
        # identity lives in the Resource, so it is not repeated on data points
        assert data["resource"]["host.name"] == ("node-a" if rank < 2 else "node-b")
        assert data["resource"]["hf_eco2ai.rank"] == rank
        for point in data["metrics"]["hw.energy"]:
            assert "hf_eco2ai.rank" not in point["attributes"]
    cpu_reporters = [r for r, d in enumerate(ranks) if "cpu" in _hw_types(d)]
    assert cpu_reporters == [0, 2]  # one per node
    job = _run_span(ranks[0], "lightning")["attributes"]
    assert job["hf_eco2ai.job.hosts"] == 2
    assert job["hf_eco2ai.job.energy.cpu.joules"] == pytest.approx(
        sum(
            _run_span(ranks[r], "lightning")["attributes"]["hf_eco2ai.energy.cpu.joules"]
            for r in (0, 2)
        ),
        rel=0.02,
        abs=0.5,
    )


def test_lightning_launches_its_own_ranks(out_dir: Path) -> None:
    """``python train.py`` with ``Trainer(strategy="ddp", devices=2)``: no torchrun.

    Rank 0 is the process the user started (no rank in its environment when it instruments);
    Lightning re-runs the script for local rank 1 with ``LOCAL_RANK=1`` set.
    """
    log = out_dir / "lightning.log"
    env = _env({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    cmd = [sys.executable, str(SCRIPT), "--framework", "lightning", "--fake-gpu", "--devices", "2"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out_dir)],
        cwd=str(out_dir),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_all([proc], [log])
    ranks = _load(out_dir, 2)
    _check_ranks(ranks, "lightning", local_world=2)
    _check_job(ranks, "lightning")
