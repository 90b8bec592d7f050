from __future__ import annotations

import csv
import json
import multiprocessing
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from transformers import TrainerCallback

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor, cli
from hf_eco2ai.outputs import power_png
from hf_eco2ai.outputs.emissions_csv import CSV_COLUMNS, append_csv, csv_safe
from hf_eco2ai.outputs.power_png import PNG_SKIPPED_NOTE, render_png
from hf_eco2ai.outputs.report_json import load_schema
from hf_eco2ai.outputs.report_read import load_report
from hf_eco2ai.outputs.summary import compare_table

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from train_hf import make_trainer


class RaiseAt(TrainerCallback):
    def __init__(self, step: int, exc: BaseException) -> None:
        self.step, self.exc = step, exc

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise self.exc


@pytest.fixture
def instrumented(fake_devices: None, tmp_path: Path) -> Iterator[tuple[Path, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    out = tmp_path / "runs"
    inst = HFEco2AIInstrumentor()
    inst.instrument(
        tracer_provider=provider,
        meter_provider=MeterProvider(),
        config=CarbonConfig(sample_interval=0.05, output_dir=str(out), project_name="=cmd|x"),
    )
    try:
        yield out, exporter
    finally:
        inst.uninstrument()


def reports(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/report.json"))]


def test_report_on_success_is_valid_and_complete(
    instrumented: tuple[Path, InMemorySpanExporter], tmp_path: Path
) -> None:
    out, _ = instrumented
    make_trainer(str(tmp_path / "t"), train_size=256, eval_size=16, epochs=2).train()
    [report] = reports(out)
    jsonschema.validate(report, load_schema())
    run = report["run"]
    assert run["status"] == "ok"
    assert run["framework"] == "transformers"
    assert run["model_class"] == "BertForSequenceClassification"
    assert run["parameters"] > 10_000
    assert report["totals"]["energy_j"] > 0
    assert set(report["totals"]["by_type"]) == {"gpu", "cpu", "memory"}
    assert {d["hw_id"] for d in report["devices"]} == {"GPU-fake-0", "cpu", "memory"}
    assert sum(d["energy_j"] for d in report["devices"]) == pytest.approx(
        report["totals"]["energy_j"], rel=0.05
    )
    assert report["carbon"]["zone"] == "XX"
    assert report["carbon"]["mean_intensity_g_per_kwh"] == pytest.approx(100.0)
    eff = report["efficiency"]
    assert eff["samples"] == 512
    assert eff["tokens"] == 512 * 32
    assert eff["j_per_sample"] == pytest.approx(report["totals"]["energy_j"] / 512)
    assert len(report["epochs"]) == 2
    assert len(report["evaluations"]) == 2
    assert (
        report["epochs"][0]["start_s"]
        < report["epochs"][0]["end_s"]
        <= report["epochs"][1]["start_s"]
    )
    assert report["projection"]["progress"] == 1.0
    tl = report["timeline"]
    assert len(tl["t_s"]) >= 3
    assert len(tl["power_w"]) == 3
    assert all(len(series) == len(tl["t_s"]) for series in tl["power_w"])
    assert tl["energy_j"] == sorted(tl["energy_j"])  # cumulative
    assert report["notes"] == []
    png = out / run["id"] / "power.png"
    assert png.exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # a real plot, not an empty canvas
    # the CSV: eco2ai's header, one row, formula injection neutralised
    with open(out / "emissions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["id"] == run["id"]
    assert rows[0]["project_name"] == "'=cmd|x"
    assert float(rows[0]["power_consumption(kWh)"]) == pytest.approx(
        report["totals"]["energy_kwh"], rel=1e-6
    )
    assert float(rows[0]["CO2_emissions(kg)"]) == pytest.approx(
        report["totals"]["emissions_g"] / 1000, rel=1e-6
    )
    assert rows[0]["GPU_name"] == "Fake GPU"


@pytest.mark.parametrize(
    ("exc", "status"), [(RuntimeError("boom"), "error"), (KeyboardInterrupt(), "interrupted")]
)
def test_report_on_failure_and_interrupt(
    instrumented: tuple[Path, InMemorySpanExporter],
    tmp_path: Path,
    exc: BaseException,
    status: str,
) -> None:
    out, exporter = instrumented
    trainer = make_trainer(
        str(tmp_path / "t"), train_size=64, eval_size=16, callbacks=[RaiseAt(3, exc)]
    )
    with pytest.raises(type(exc)):
        trainer.train()
    [report] = reports(out)
    jsonschema.validate(report, load_schema())
    assert report["run"]["status"] == status
    assert report["run"]["error_type"] == type(exc).__qualname__
    assert report["totals"]["energy_j"] > 0
    assert report["efficiency"]["samples"] == 24  # our callback runs first: 3 steps counted
    run_span = next(
        s for s in exporter.get_finished_spans() if s.name == "transformers.trainer.train"
    )
    assert run_span.status.status_code.name == "ERROR"


def test_write_report_false_writes_nothing(fake_devices: None, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    inst = HFEco2AIInstrumentor()
    inst.instrument(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(),
        config=CarbonConfig(sample_interval=0.05, output_dir=str(out), write_report=False),
    )
    try:
        make_trainer(str(tmp_path / "t"), train_size=32, eval_size=8, epochs=1).train()
    finally:
        inst.uninstrument()
    assert not out.exists()


def test_unwritable_output_dir_never_breaks_training(fake_devices: None, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    config = CarbonConfig(sample_interval=0.05, output_dir=str(blocker / "runs"))
    blocker.write_text("not a directory")  # unwritable after the start (refused at start)
    inst = HFEco2AIInstrumentor()
    inst.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(), config=config)
    try:
        result = make_trainer(str(tmp_path / "t"), train_size=32, eval_size=8, epochs=1).train()
    finally:
        inst.uninstrument()
    assert result.global_step == 4


def _append_many(path: str, worker: int) -> None:
    for k in range(50):
        append_csv(Path(path), [f"{worker}-{k}", "p", "d"] + ["x"] * (len(CSV_COLUMNS) - 3))


def test_concurrent_appends_do_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 101  # one header, 100 rows
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)
    assert {r[0] for r in rows[1:]} == {f"{w}-{k}" for w in range(2) for k in range(50)}


def test_csv_readable_by_pandas_if_installed(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "emissions.csv"
    append_csv(
        path,
        [
            "a",
            "p",
            "d",
            "1",
            "2026-01-01T00:00:00+00:00",
            "1.0",
            "0.1",
            "0.01",
            "c",
            "g",
            "os",
            "FR",
            "N/A",
        ],
    )
    frame = pd.read_csv(path)
    assert list(frame.columns) == list(CSV_COLUMNS)
    assert frame["power_consumption(kWh)"][0] == 0.1


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx"])
def test_csv_safe_neutralises_formulas(text: str) -> None:
    assert csv_safe(text) == "'" + text
    assert csv_safe("bert-base") == "bert-base"


def test_cli_report_and_compare(
    instrumented: tuple[Path, InMemorySpanExporter],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _ = instrumented
    make_trainer(str(tmp_path / "a"), train_size=32, eval_size=8, epochs=1).train()
    make_trainer(str(tmp_path / "b"), train_size=64, eval_size=8, epochs=1).train()
    first, second = sorted(out.glob("*/report.json"), key=lambda p: load_report(p)["run"]["start"])
    (first.parent / "power.png").unlink()
    capsys.readouterr()
    assert cli.main(["report", str(first.parent), "--png"]) == 0
    text = capsys.readouterr().out
    assert "CO2e" in text
    assert "total (this job):" in text
    assert (first.parent / "power.png").exists()
    assert cli.main(["compare", str(first), str(second)]) == 0
    text = capsys.readouterr().out
    assert "energy J" in text
    assert "J/sample" in text
    assert "%" in text
    assert cli.main(["report", str(tmp_path / "missing.json")]) == 2


def test_load_report_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not an hf-eco2ai run report"):
        load_report(path)


def test_compare_handles_missing_values() -> None:
    base = {
        "run": {"id": "a" * 32, "duration_s": 1.0},
        "totals": {"energy_j": 10.0, "emissions_g": 1.0},
        "efficiency": {"j_per_sample": None, "j_per_token": None},
    }
    other = {
        "run": {"id": "b" * 32, "duration_s": 2.0},
        "totals": {"energy_j": 15.0, "emissions_g": 1.5},
        "efficiency": {"j_per_sample": 0.5, "j_per_token": None},
    }
    text = compare_table(base, other)
    assert "+50.0%" in text
    assert "n/a" in text


def test_png_skipped_without_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert render_png({}, tmp_path / "p.png") is False
    assert not (tmp_path / "p.png").exists()


def test_png_is_drawn_inline_without_a_thread(
    instrumented: tuple[Path, InMemorySpanExporter],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Would catch: a ``hf-eco2ai-png`` thread (or any thread) started to draw power.png, or
    ``train()`` returning before power.png is complete."""
    import threading

    out, _ = instrumented
    drawn_on: list[str] = []
    original = power_png.render_png
    started = threading.Thread.start

    def recording_render(report: Any, path: Path) -> bool:
        drawn_on.append(threading.current_thread().name)
        return original(report, path)

    def no_png_thread(self: threading.Thread) -> None:
        assert "png" not in self.name, f"thread {self.name!r} started for power.png"
        started(self)

    monkeypatch.setattr(power_png, "render_png", recording_render)
    monkeypatch.setattr("hf_eco2ai.outputs.render_png", recording_render)
    monkeypatch.setattr(threading.Thread, "start", no_png_thread)
    make_trainer(str(tmp_path / "a"), train_size=32, eval_size=8, epochs=1).train()
    (run_dir,) = [p.parent for p in out.glob("*/report.json")]
    assert drawn_on == [threading.current_thread().name]
    assert (run_dir / "power.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [t for t in threading.enumerate() if "png" in t.name]
    assert not list(run_dir.glob("*.tmp"))


def test_png_skipped_with_a_note_when_matplotlib_is_absent(
    instrumented: tuple[Path, InMemorySpanExporter],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Would catch: a missing matplotlib that leaves no trace in report.json, or an attempt to
    draw (import) anyway."""
    out, _ = instrumented
    monkeypatch.setattr("hf_eco2ai.outputs.matplotlib_available", lambda: False)

    def must_not_draw(report: Any, path: Path) -> bool:
        raise AssertionError("render_png called without matplotlib")

    monkeypatch.setattr("hf_eco2ai.outputs.render_png", must_not_draw)
    make_trainer(str(tmp_path / "a"), train_size=32, eval_size=8, epochs=1).train()
    [report] = reports(out)
    jsonschema.validate(report, load_schema())
    assert report["notes"] == [PNG_SKIPPED_NOTE]
    assert not (out / report["run"]["id"] / "power.png").exists()


def test_matplotlib_lookup_is_cached() -> None:
    power_png.matplotlib_available.cache_clear()
    assert power_png.matplotlib_available() is True  # the dev environment has matplotlib
    assert power_png.matplotlib_available.cache_info().hits == 0
    power_png.matplotlib_available()
    assert power_png.matplotlib_available.cache_info().hits == 1


def test_png_failure_is_logged_not_raised(
    instrumented: tuple[Path, InMemorySpanExporter],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Would catch: an exception from drawing escaping into ``train()`` instead of one logged
    warning, or the JSON/CSV not written."""
    import logging

    out, _ = instrumented
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")

    def broken(report: Any, path: Path) -> bool:
        raise OSError("disk full")

    monkeypatch.setattr("hf_eco2ai.outputs.render_png", broken)
    make_trainer(str(tmp_path / "a"), train_size=32, eval_size=8, epochs=1).train()
    assert len(reports(out)) == 1
    assert (out / "emissions.csv").exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "power.png" in warnings[0].getMessage()
