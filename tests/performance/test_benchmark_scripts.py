"""The benchmark scripts still run (tiny sizes; structure and bounds only, never timings)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module", autouse=True)
def _bench_on_path() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(autouse=True)
def _logging_restored() -> Any:
    """The benchmarks quieten the ``hf_eco2ai`` logger for their own output: not for the
    tests that run after these."""
    import logging

    logger = logging.getLogger("hf_eco2ai")
    level = logger.level
    try:
        yield
    finally:
        logger.setLevel(level)


def test_sampler_benchmark_covers_every_configuration() -> None:
    import sampler

    result = sampler.run(duration_s=0.35, ticks=10)
    keys = {(r["gpus"], r["cpu"], r["rate_hz"]) for r in result["rows"]}
    assert keys == {(g, c, hz) for g in (1, 8) for c in ("rapl", "tdp") for hz in (1.0, 10.0)}
    for row in result["rows"]:
        methods = set(row["methods"])
        assert ("nvml-energy" in methods) or ("nvml-power" in methods)
        assert ("rapl" in methods) == (row["cpu"] == "rapl")
        assert ("tdp-model" in methods) == (row["cpu"] == "tdp")
        if row["rate_hz"] == 10.0:
            assert row["thread_ticks"] >= 1
    assert isinstance(result["budget_met"], bool)


def test_memory_benchmark_history_is_a_bounded_ring() -> None:
    import memory

    result = memory.sampler_run(hours=0.01, history_size=10)  # 36 ticks into a 10-slot ring
    assert result["ticks"] == 36
    assert result["history_len"] == 10
    assert result["devices"] == 12  # 8 GPUs + 2 packages + 2 dram


def test_overhead_rounds_interleave_every_variant() -> None:
    import overhead

    rounds = list(overhead._rotations(overhead.VARIANTS, 4))
    for order in rounds:
        assert Counter(order) == Counter(overhead.VARIANTS)
    assert len({tuple(order) for order in rounds}) == 4  # each round in a different order
    assert {order[0] for order in rounds} != {"plain"}


def test_overhead_workers_cannot_reach_the_network() -> None:
    code = (
        "import socket, sys\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "from overhead import block_network\n"
        "block_network()\n"
        "for target in [('192.0.2.1', 80), 'example.invalid']:\n"
        "    try:\n"
        "        if isinstance(target, str):\n"
        "            socket.getaddrinfo(target, 443)\n"
        "        else:\n"
        "            socket.create_connection(target, timeout=5)\n"
        "    except OSError:\n"
        "        continue\n"
        "    sys.exit('reached ' + repr(target))\n"
        "print('blocked')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "blocked"


def test_overhead_budget_lines_compare_with_peers() -> None:
    import overhead

    rows = [
        {"framework": "trainer", "variant": "hf-eco2ai", "ratio_median": 1.004},
        {"framework": "trainer", "variant": "eco2ai", "ratio_median": 1.3},
        {"framework": "trainer", "variant": "codecarbon", "ratio_median": 1.002},
    ]
    text = overhead.budget_lines({"rows": rows})
    assert "budget ≤ 1.01: met" in text
    assert "vs eco2ai 1.3000: lower" in text
    assert "vs codecarbon 1.0020: NOT lower" in text


def test_overhead_pairs_each_tool_with_plain_runs_in_its_own_worker(tmp_path: Path) -> None:
    """Would catch: the pairing broken (a ratio taken across workers, a pair missing its plain
    run), the plain run in a tool's worker still carrying the tool, or our power.png thread
    left running after the window (``threads left``)."""
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "overhead.py"),
            "--no-peers",
            "--frameworks",
            "trainer",
            "--variants",
            "hf-eco2ai",
            "--rounds",
            "2",
            "--train-size",
            "64",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["variant"] == "hf-eco2ai"
    assert row["rounds"] == 2
    runs, plains = result["runs"]["trainer/hf-eco2ai"], result["plain_runs"]["trainer/hf-eco2ai"]
    assert [r["variant"] for r in runs] == ["hf-eco2ai"] * 2
    assert [r["variant"] for r in plains] == ["plain"] * 2
    assert all(r["energy_kwh"] and r["energy_kwh"] > 0 for r in runs)  # the tool measured
    assert all(r["report_s"] is None and r["energy_kwh"] is None for r in plains)
    assert all(r["threads_left"] == 0 for r in runs + plains)
    ratios = sorted(a["wall_s"] / b["wall_s"] for a, b in zip(runs, plains, strict=True))
    assert row["ratio_median"] == pytest.approx((ratios[0] + ratios[1]) / 2)
    assert row["ratio_ci_low"] <= row["ratio_median"] <= row["ratio_ci_high"]
    assert "| trainer | hf-eco2ai |" in proc.stdout


def test_overhead_median_interval_covers_the_median() -> None:
    import overhead

    values = [1.0, 1.02, 0.99, 1.01, 1.005, 0.995, 1.03]
    low, high = overhead.median_ci(values)
    assert low <= 1.005 <= high
    assert min(values) <= low < high <= max(values)
    assert overhead.median_ci(values) == (low, high)  # fixed seed: reproducible


def test_profile_run_names_our_entry_points() -> None:
    """Would catch: the profile losing track of our entry points (renamed functions), which
    would leave docs/benchmarks.md's cost breakdown without its source."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "profile_run.py"), "--steps", "64", "--top", "5"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in (
        "set-up: instrument()",
        "training_step wrapper (per step)",
        "on_step_end (per step)",
        "on_train_end",
        "of which write_run_report",
        "tear-down: uninstrument()",
    ):
        assert label in proc.stdout, label
    assert "| 64 |" in proc.stdout  # one call per step


def test_idle_cost_reads_the_clocks_of_our_two_threads_in_a_worker() -> None:
    import idle_cost

    lines: list[str] = []
    result = idle_cost.run(["hf-eco2ai"], sys.executable, 1.0, 0.3, 1, lines.append)
    (run,) = result["runs"]
    assert run["tool"] == "hf-eco2ai"
    assert run["method"] == "threads"  # our threads live across the window
    assert set(run["threads_at_start"]) == set(idle_cost.OUR_THREADS)
    assert set(run["per_thread_pct"]) == set(idle_cost.OUR_THREADS)
    assert run["pct_of_core"] == pytest.approx(sum(run["per_thread_pct"].values()))
    assert run["process_pct"] >= 0.0 and run["duration_s"] >= 1.0
    summary = result["summary"]["hf-eco2ai"]
    assert summary["min_pct"] == summary["median_pct"] == summary["max_pct"]
    assert len(lines) == 1 and "hf-eco2ai" in lines[0]
