"""The outputs agree with themselves (issue 14 §4): the figure ends at the report's total and
says what is estimated; small CO2 figures are never printed as zero; emissions.csv in eco2ai's
formats."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from hf_eco2ai.outputs import write_run_report
from hf_eco2ai.outputs.emissions_csv import CSV_COLUMNS
from hf_eco2ai.outputs.power_png import CAPTION, build_figure, co2_curve
from hf_eco2ai.outputs.report_json import build_report
from hf_eco2ai.outputs.summary import compare_table, format_co2, summary_table
from tests.fakes.run_record import record

TOTAL_G = 100.0 / 3.6e6 * 100.0  # the fake run: 100 J at 100 g/kWh


@pytest.mark.parametrize(
    "samples_s",
    [[0.5, 1.0, 1.5], [0.7], []],
    ids=["timeline-holds-half-the-energy", "one-sample", "no-sample"],
)
def test_power_png_draws_the_whole_run_and_ends_at_the_reports_total(
    samples_s: list[float],
) -> None:
    """Would catch: a short run's cumulative CO2 line ending below the total in the title (the
    timeline held 35 of 57 J), a run with one sample drawing no line, an axis of
    -0.05..0.05 g, or a figure that does not say its numbers are estimated."""
    report = build_report(record(samples_s=samples_s))
    assert report["totals"]["emissions_g"] == pytest.approx(TOTAL_G)
    fig = build_figure(report)
    ax, ax2 = fig.axes
    assert ax.get_xlim() == (0.0, 2.0)
    (line,) = ax2.get_lines()
    xs, ys = list(line.get_xdata()), list(line.get_ydata())
    assert xs[0] == 0.0
    assert xs[-1] == 2.0
    assert ys[0] == 0.0
    assert ys[-1] == pytest.approx(TOTAL_G * 1000)  # in mg: a small run
    assert ys == sorted(ys)
    bottom, top = ax2.get_ylim()
    assert bottom == 0.0
    assert top >= ys[-1] * 1.75  # the band's high end (±75 %) is on the axis
    assert "mg" in ax2.get_ylabel()
    assert "estimated" in ax.get_title()
    assert "estimated" in ax2.get_ylabel()
    assert format_co2(TOTAL_G) in ax.get_title()
    assert CAPTION in [t.get_text() for t in fig.texts]
    assert "grey = the CO2e band" in CAPTION
    if len(samples_s) == 1:
        (power,) = ax.get_lines()
        assert power.get_marker() == "o"  # a single reading is visible


def test_co2_curve_of_a_fully_sampled_run_follows_the_samples() -> None:
    report = build_report(record())
    xs, grams = co2_curve(report)
    assert grams[-1] == pytest.approx(TOTAL_G)
    # 50 W throughout: half way through, half the total
    assert grams[xs.index(1.0)] == pytest.approx(TOTAL_G / 2, rel=1e-3)


def test_small_co2_is_printed_with_significant_digits_never_as_zero() -> None:
    """Would catch: ``CO2e: 0.0000 g`` for a small run."""
    report = build_report(record())
    text = summary_table(report)
    assert "0.0000 g" not in text
    assert f"CO2e: {TOTAL_G * 1000:.3g} mg" in text  # 0.278 mg
    assert "0.0000" not in compare_table(report, report)
    assert format_co2(0.0) == "0 g"
    assert format_co2(2.5e-9) == "2.5e-06 mg"
    assert format_co2(1234.5) == "1,234 g"


def test_emissions_csv_uses_eco2ais_formats(tmp_path: Path) -> None:
    """Would catch: ``cost`` written as ``N/A`` (eco2ai's numeric cost column becomes text),
    an epoch count where eco2ai writes ``N/A`` for a row that is not one epoch, or an ISO
    start time where eco2ai writes local ``%Y-%m-%d %H:%M:%S``."""
    start = 1_700_000_000.0
    write_run_report(record(start_unix=start), tmp_path, png=False)
    with open(tmp_path / "emissions.csv", newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert list(row) == list(CSV_COLUMNS)
    assert row["cost"] == ""
    assert row["epoch"] == "N/A"
    assert row["start_time"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(tmp_path / "emissions.csv")
    assert frame["cost"].dtype.kind == "f"  # numeric (NaN): eco2ai can sum it
    assert frame["CO2_emissions(kg)"][0] == pytest.approx(TOTAL_G / 1000)
