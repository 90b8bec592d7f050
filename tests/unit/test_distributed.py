"""Rank facts, identity attributes, the Resource helper and job totals (in process, no launcher).

The multi-process behaviour is covered by ``tests/integration/test_ddp.py``; here every rank of a
job is simulated in one process against a ``torch.distributed.HashStore``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import torch.distributed as dist
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from hf_eco2ai import CarbonConfig
from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.distributed import (
    IDENTITY_ATTRIBUTES,
    JobAccounting,
    JobTotals,
    RankContribution,
    RankInfo,
    default_store,
    distributed_resource,
    host_name,
    rank_info,
    warn_if_host_measured_off_rank_zero,
)
from hf_eco2ai.run import Run
from hf_eco2ai.telemetry.session import TelemetrySession, resource_has_identity
from tests.conftest import fake_monitor

# --------------------------------------------------------------------------- rank facts


def test_defaults_single_process() -> None:
    info = rank_info(environ={}, use_torch=False)
    assert (info.rank, info.local_rank, info.world_size, info.local_world_size) == (0, 0, 1, 1)
    assert info.source == "default"
    assert not info.distributed
    assert info.is_global_zero and info.measures_host
    assert set(info.attributes()) == set(IDENTITY_ATTRIBUTES)


def test_torchrun_env() -> None:
    env = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    info = rank_info(environ=env, use_torch=False)
    assert (info.rank, info.local_rank, info.world_size, info.local_world_size) == (5, 1, 8, 4)
    assert info.source == "env:torchrun"
    assert info.distributed and not info.is_global_zero and not info.measures_host


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "SLURM_PROCID": "6",
                "SLURM_LOCALID": "2",
                "SLURM_NTASKS": "8",
                "SLURM_NTASKS_PER_NODE": "4(x2)",
            },
            (6, 2, 8, 4, "env:slurm"),
        ),
        (
            {
                "OMPI_COMM_WORLD_RANK": "3",
                "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                "OMPI_COMM_WORLD_SIZE": "4",
                "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
            },
            (3, 1, 4, 2, "env:openmpi"),
        ),
        (
            {"PMI_RANK": "2", "MPI_LOCALRANKID": "0", "PMI_SIZE": "4", "MPI_LOCALNRANKS": "2"},
            (2, 0, 4, 2, "env:pmi"),
        ),
    ],
)
def test_launcher_envs(env: dict[str, str], expected: tuple[Any, ...]) -> None:
    info = rank_info(environ=env, use_torch=False)
    assert (
        info.rank,
        info.local_rank,
        info.world_size,
        info.local_world_size,
        info.source,
    ) == expected


def test_torchrun_env_wins_over_slurm() -> None:
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0"}
    env |= {"SLURM_LOCALID": "0", "SLURM_NTASKS": "1"}
    info = rank_info(environ=env, use_torch=False)
    assert (info.rank, info.local_rank, info.world_size) == (1, 1, 2)


def test_framework_wins_over_env_and_fields_resolve_independently() -> None:
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}
    info = rank_info({"rank": 3, "local_rank": None, "world_size": 4}, environ=env, use_torch=False)
    assert info.source == "framework"
    assert (info.rank, info.local_rank, info.local_world_size) == (3, 0, 2)  # local from env


def test_local_rank_derived_from_local_world_size() -> None:
    info = rank_info(
        {"rank": 5, "world_size": 8, "local_world_size": 4}, environ={}, use_torch=False
    )
    assert info.local_rank == 1


def test_local_rank_unknown_multi_rank_assumes_one_rank_per_host() -> None:
    info = rank_info({"rank": 3, "world_size": 4}, environ={}, use_torch=False)
    assert (info.local_rank, info.local_world_size) == (0, None)


@pytest.mark.parametrize("bad", ["", "x", "-1", "  "])
def test_unparsable_env_values_are_ignored(bad: str) -> None:
    info = rank_info(environ={"RANK": bad, "WORLD_SIZE": "2"}, use_torch=False)
    assert info.rank == 0 and info.world_size == 2


def test_bools_and_negative_framework_values_are_ignored() -> None:
    info = rank_info({"rank": True, "world_size": -3}, environ={}, use_torch=False)  # type: ignore[dict-item]
    assert (info.rank, info.world_size) == (0, 1)


def test_local_world_size_zero_is_unknown() -> None:
    info = rank_info(environ={"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "0"}, use_torch=False)
    assert info.local_world_size is None


def test_host_name_override_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert host_name({"OTEL_RESOURCE_ATTRIBUTES": "a=b, host.name = node%2D7 ,c=d"}) == "node-7"
    assert host_name({"OTEL_RESOURCE_ATTRIBUTES": "host.name="}) not in ("", "host.name")
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    assert host_name({}) == "box"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=from-env")
    assert rank_info(environ=None, use_torch=False).host_name == "from-env"


@pytest.fixture
def gloo_world_of_one() -> Iterator[dist.Store]:
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield store
    finally:
        dist.destroy_process_group()


def test_torch_distributed_first(gloo_world_of_one: dist.Store) -> None:
    info = rank_info({"rank": 7, "world_size": 9}, environ={"RANK": "3"})
    assert (info.rank, info.world_size, info.source) == (0, 1, "torch.distributed")
    assert default_store() is not None
    # a one-rank job exchanges nothing
    assert JobAccounting.begin(info, "test") is None


def test_job_accounting_on_the_default_store(gloo_world_of_one: dist.Store) -> None:
    # the group has one rank, but the accounting only needs the store: simulate rank 1 of 2
    job = JobAccounting.begin(RankInfo(1, 1, 2, 2, "h"), "test-default-store")
    assert job is not None
    assert default_store().check([f"{job.prefix}/joined/1"])  # type: ignore[union-attr]


def test_no_store_without_process_group() -> None:
    assert not dist.is_initialized()
    assert default_store() is None
    assert JobAccounting.begin(RankInfo(1, 1, 2, 2, "h"), "test") is None
    assert rank_info({"rank": 1, "world_size": 2}, environ={}).source == "framework"


# --------------------------------------------------------------------------- identity


def _identity() -> dict[str, Any]:
    return RankInfo(1, 1, 2, 2, "node-x").attributes()


def test_metrics_merge_identity_into_observations_own_attributes_win() -> None:
    from hf_eco2ai.telemetry.metrics import EnergyMetrics, TrainingCounters

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counters = TrainingCounters("demo")
    counters.add(2, 16, 0)
    EnergyMetrics(provider.get_meter("m"), lambda: None, lambda: [counters], _identity)
    data = reader.get_metrics_data()
    got = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    (point,) = got["hf_eco2ai.training.steps"].data.data_points
    assert point.value == 2
    assert point.attributes["hf_eco2ai.rank"] == 1
    assert point.attributes["host.name"] == "node-x"
    assert point.attributes["hf_eco2ai.framework"] == "demo"


def test_resource_helper_and_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    resource = distributed_resource(RankInfo(3, 1, 4, 2, "node-b"), {"team": "green"})
    attrs = resource.attributes
    assert attrs["hf_eco2ai.rank"] == 3 and attrs["hf_eco2ai.world_size"] == 4
    assert attrs["host.name"] == "node-b" and attrs["service.name"] == "svc"
    assert attrs["team"] == "green" and isinstance(attrs["process.pid"], int)
    assert resource_has_identity(TracerProvider(resource=resource))
    assert resource_has_identity(MeterProvider(resource=resource))
    assert not resource_has_identity(TracerProvider(resource=Resource.create()))
    assert not resource_has_identity(MeterProvider())
    assert not resource_has_identity(NoOpTracerProvider())
    assert not resource_has_identity(NoOpMeterProvider())
    default = distributed_resource()
    assert default.attributes["hf_eco2ai.rank"] == rank_info().rank


# --------------------------------------------------------------------------- sessions


class Recorder:
    """A monitor factory that records the local rank it was asked for."""

    def __init__(self) -> None:
        self.local_ranks: list[int] = []

    def __call__(self, config: CarbonConfig, local_rank: int) -> Any:
        self.local_ranks.append(local_rank)
        return fake_monitor(config, local_rank)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    monitor_module.set_monitor_factory(rec)
    try:
        yield rec
    finally:
        monitor_module.set_monitor_factory(None)


def test_session_builds_the_monitor_for_its_local_rank(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    session = TelemetrySession(CarbonConfig(), tracer_provider=TracerProvider())
    session.close()
    assert session.rank.local_rank == 1
    session = TelemetrySession(CarbonConfig(), local_rank=0)
    session.close()
    assert session.rank.local_rank == 0
    assert recorder.local_ranks == [1, 0]


def test_session_identity_on_spans_unless_resource_has_it(recorder: Recorder) -> None:
    exporter = InMemorySpanExporter()
    plain = TracerProvider()
    plain.add_span_processor(SimpleSpanProcessor(exporter))
    rank = RankInfo(0, 0, 2, 2, "node-a")
    session = TelemetrySession(CarbonConfig(), tracer_provider=plain, rank=rank)
    config = CarbonConfig(write_report=False)
    try:
        for new_rank in (None, RankInfo(1, 0, 2, 2, "node-a")):
            if new_rank is not None:
                session.set_rank(new_rank)
            run = Run(session, "demo", "demo", config=config)
            run.begin({"x": 1}, name="before" if new_rank is None else "after")
            run.finish({})
    finally:
        session.close()
    before, after = exporter.get_finished_spans()
    assert before.attributes["hf_eco2ai.rank"] == 0
    assert before.attributes["host.name"] == "node-a" and before.attributes["x"] == 1
    assert after.attributes["hf_eco2ai.rank"] == 1
    with_resource = TracerProvider(resource=distributed_resource(rank))
    meters = MeterProvider(resource=distributed_resource(rank))
    session = TelemetrySession(
        CarbonConfig(), tracer_provider=with_resource, meter_provider=meters, rank=rank
    )
    try:
        assert session.span_identity() == {}
    finally:
        session.close()


def test_host_devices_on_nonzero_local_rank_warn_once(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    session = TelemetrySession(CarbonConfig(), rank=RankInfo(0, 0, 2, 2, "h"))
    try:
        with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
            session.set_rank(RankInfo(1, 1, 2, 2, "h"))
            session.set_rank(RankInfo(1, 1, 2, 2, "h"))
        warnings = [r for r in caplog.records if "counted more than once" in r.getMessage()]
        assert len(warnings) == 1
        assert not warn_if_host_measured_off_rank_zero(session.monitor, RankInfo(0, 0, 2, 2, "h"))
    finally:
        session.close()


def test_no_warning_without_host_devices() -> None:
    from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    from hf_eco2ai.energy_monitor import EnergyMonitor

    monitor = EnergyMonitor(
        CarbonConfig(), sensors=[], intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "config"))
    )
    assert not warn_if_host_measured_off_rank_zero(monitor, RankInfo(1, 1, 2, 2, "h"))


# --------------------------------------------------------------------------- job totals


def contribution(
    rank: int, energy: float, host: str = "h", local: int | None = None
) -> RankContribution:
    return RankContribution(
        rank,
        rank if local is None else local,
        host,
        energy,
        energy / 100,
        {"gpu": energy},
        {"gpu": energy / 100},
        8,
        64,
    )


def test_contribution_round_trip() -> None:
    c = contribution(2, 3.5)
    assert RankContribution.from_json(c.to_json().encode()) == c


def test_totals_combine_and_attributes() -> None:
    parts = [
        contribution(0, 10.0, "a", 0),
        contribution(1, 5.0, "a", 1),
        contribution(2, 7.0, "b", 0),
        contribution(2, 99.0, "b", 0),  # a repeated rank counts once
    ]
    totals = JobTotals.combine(parts, world_size=4)
    assert totals.ranks == (0, 1, 2)
    assert totals.missing == (3,)
    attrs = totals.attributes()
    assert attrs["hf_eco2ai.job.energy.joules"] == 22.0
    assert attrs["hf_eco2ai.job.energy.gpu.joules"] == 22.0
    assert attrs["hf_eco2ai.job.emissions.gpu.grams"] == pytest.approx(0.22)
    assert attrs["hf_eco2ai.job.hosts"] == 2
    assert attrs["hf_eco2ai.job.ranks"] == 3
    assert attrs["hf_eco2ai.job.training.samples"] == 24
    assert attrs["hf_eco2ai.job.training.tokens"] == 192
    assert attrs["hf_eco2ai.job.complete"] is False
    assert attrs["hf_eco2ai.job.missing_ranks"] == [3]
    assert attrs["hf_eco2ai.job.energy_per_sample.joules"] == pytest.approx(22.0 / 24)
    line = totals.summary_line("lightning")
    assert "3/4 ranks on 2 host(s)" in line and "ranks [3] did not report" in line
    empty = JobTotals.combine([], world_size=2)
    assert "no devices" in empty.summary_line("x")
    assert "hf_eco2ai.job.training.tokens" not in empty.attributes()


def _jobs(world: int, store: dist.Store, key: str, timeout_s: float = 5.0) -> list[JobAccounting]:
    return [
        JobAccounting(
            RankInfo(r, r % 2, world, 2, f"host-{r // 2}"), store, key, timeout_s=timeout_s
        )
        for r in range(world)
    ]


def test_rank_zero_waits_for_the_announced_ranks() -> None:
    store = dist.HashStore()
    jobs = _jobs(4, store, "run/0")
    for job in jobs:
        job.start()
    calls: list[int] = []

    def own() -> RankContribution:
        calls.append(1)
        return contribution(0, 1.0)

    def late(rank: int) -> None:
        jobs[rank].finish(lambda: contribution(rank, float(rank), f"host-{rank // 2}"))

    threads = [threading.Timer(0.05 * r, late, args=(r,)) for r in (1, 2, 3)]
    for t in threads:
        t.start()
    totals = jobs[0].finish(own)
    for t in threads:
        t.join()
    assert totals is not None and calls == [1]
    assert totals.ranks == (0, 1, 2, 3) and totals.missing == ()
    assert totals.energy_j == pytest.approx(1.0 + 1.0 + 2.0 + 3.0)
    assert totals.hosts == 3  # "h" for rank 0's own contribution, host-0, host-1
    # keys are cleaned up
    assert not store.check(["hf_eco2ai/job/run/0/done/1"])
    assert not store.check(["hf_eco2ai/job/run/0/joined/0"])


def test_ranks_that_never_joined_are_not_waited_for() -> None:
    store = dist.HashStore()
    jobs = _jobs(3, store, "run/1", timeout_s=30.0)
    jobs[0].start()
    jobs[1].start()
    jobs[1].finish(contribution(1, 2.0))
    totals = jobs[0].finish(contribution(0, 1.0))  # rank 2 not instrumented: no wait
    assert totals is not None
    assert totals.ranks == (0, 1) and totals.missing == (2,)


def test_a_rank_that_joined_but_never_finished_times_out(caplog: pytest.LogCaptureFixture) -> None:
    store = dist.HashStore()
    jobs = _jobs(3, store, "run/2", timeout_s=0.2)
    for job in jobs:
        job.start()
    jobs[2].finish(contribution(2, 4.0))
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        totals = jobs[0].finish(contribution(0, 1.0))
    assert totals is not None and totals.missing == (1,)
    assert totals.energy_j == pytest.approx(5.0)
    assert any("partial" in r.getMessage() for r in caplog.records)


def test_unreadable_contribution_is_skipped() -> None:
    store = dist.HashStore()
    jobs = _jobs(2, store, "run/3")
    jobs[1].start()
    store.set("hf_eco2ai/job/run/3/done/1", "not json")
    totals = jobs[0].finish(contribution(0, 1.0))
    assert totals is not None and totals.ranks == (0,)


class BrokenStore:
    def set(self, key: str, value: str) -> None:
        raise RuntimeError("store down")

    def get(self, key: str) -> bytes:
        raise RuntimeError("store down")

    def check(self, keys: list[str]) -> bool:
        return True

    def wait(self, keys: list[str], timeout: timedelta) -> None:
        pass

    def delete_key(self, key: str) -> bool:
        raise RuntimeError("store down")


def test_broken_store_cleanup_is_contained() -> None:
    job = JobAccounting(RankInfo(0, 0, 2, 2, "h"), BrokenStore(), "x")
    totals = job.finish(contribution(0, 1.0))
    assert totals is not None and totals.ranks == (0,)


# --------------------------------------------------------------------------- job totals of a run


@pytest.fixture
def run(recorder: Recorder) -> Iterator[tuple[Run, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    session = TelemetrySession(
        CarbonConfig(sample_interval=0.05), tracer_provider=provider, rank=RankInfo(0, 0, 2, 2, "h")
    )
    telemetry = Run(
        session, "lightning", "lightning.trainer", config=CarbonConfig(write_report=False)
    )
    telemetry.begin({}, name="lightning.trainer.fit")
    telemetry.step(1, 8, 0)
    try:
        yield telemetry, exporter
    finally:
        session.close()


def test_finish_job_puts_totals_on_rank_zero_run_span(
    run: tuple[Run, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    telemetry, exporter = run
    store = dist.HashStore()
    zero, one = _jobs(2, store, "fj")
    zero.start()
    one.start()
    one.finish(contribution(1, 3.0))
    telemetry.job = zero
    with caplog.at_level(logging.INFO, logger="hf_eco2ai"):
        window = telemetry.finish({})
    assert window is not None
    (span,) = exporter.get_finished_spans()
    attrs = span.attributes
    assert attrs["hf_eco2ai.job.ranks"] == 2
    assert attrs["hf_eco2ai.job.training.samples"] == 16
    own = attrs["hf_eco2ai.energy.joules"]
    assert attrs["hf_eco2ai.job.energy.joules"] == pytest.approx(own + 3.0, abs=0.5)
    assert any("lightning job (2/2 ranks" in r.getMessage() for r in caplog.records)


def test_finish_job_on_other_ranks_and_without_job(
    run: tuple[Run, InMemorySpanExporter],
) -> None:
    telemetry, _ = run
    store = dist.HashStore()
    _, one = _jobs(2, store, "fj2")
    telemetry.job = one
    (span_attrs,) = [telemetry.finish({})]
    assert span_attrs is not None
    assert store.check(["hf_eco2ai/job/fj2/done/1"])  # published; only rank 0 collects
    assert telemetry.finish({}) is None  # run no longer open


def test_finish_job_failure_is_contained(
    run: tuple[Run, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    telemetry, _ = run
    telemetry.job = JobAccounting(RankInfo(1, 1, 2, 2, "h"), BrokenStore(), "x")
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        assert telemetry.finish({}) is not None  # the run still ends and reports
    assert any("could not compute job totals" in r.getMessage() for r in caplog.records)
    assert not telemetry.running


# --------------------------------------------------------------------------- framework facts


def test_framework_rank_facts() -> None:
    from types import SimpleNamespace

    from hf_eco2ai.integrations.lightning_callback import lightning_rank_facts
    from hf_eco2ai.integrations.transformers_callback import trainer_rank_facts

    class Raising:
        @property
        def process_index(self) -> int:
            raise RuntimeError("not set up")

        local_process_index = 1
        world_size = 2

    assert trainer_rank_facts(Raising()) == {"rank": None, "local_rank": 1, "world_size": 2}  # type: ignore[arg-type]
    pl = SimpleNamespace(global_rank=3, local_rank=1, world_size=4, num_devices=2)
    assert lightning_rank_facts(pl) == {
        "rank": 3,
        "local_rank": 1,
        "world_size": 4,
        "local_world_size": 2,
    }
    assert lightning_rank_facts(SimpleNamespace(global_rank=True))["rank"] is None
