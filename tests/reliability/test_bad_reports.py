"""`hf-eco2ai report` / `compare` on files that are not valid reports, and on many reports.

Issue 15 §6-§7: a malformed, truncated, non-JSON or old-schema report, or one with NaN or
negative energy, is one line on stderr naming the file and what is wrong, and exit status 2
(never a traceback, never a NaN accepted); a directory or glob of hundreds of reports is read
one report at a time, and the invalid ones are skipped, each with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hf_eco2ai import cli
from hf_eco2ai.outputs import report_read, write_run_report
from hf_eco2ai.outputs.report_json import load_schema
from hf_eco2ai.outputs.report_read import SUPPORTED_KEYWORDS, schema_problems
from tests.fakes.run_record import record


def valid_report(directory: Path, start_unix: float = 1_700_000_000.0) -> Path:
    written = write_run_report(record(start_unix=start_unix), directory, png=False)
    assert written.json_path is not None
    return written.json_path


def edit(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # allow_nan: writes NaN/Infinity as a careless tool would


def _set(keys: str, value: object) -> Callable[[dict[str, Any]], object]:
    *parents, last = keys.split(".")

    def change(data: dict[str, Any]) -> None:
        for k in parents:
            data = data[k]
        data[last] = value

    return change


# (id, how the file is spoiled, what the one line must say)
SPOILED: list[tuple[str, Callable[[Path], object], str]] = [
    (
        "truncated",
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "not valid JSON",
    ),
    ("empty", lambda p: p.write_bytes(b""), "not valid JSON: Expecting value (line 1 column 1)"),
    ("not-json", lambda p: p.write_text("energy: 12 J\n"), "not valid JSON"),
    ("not-utf8", lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8 text (byte 0)"),
    (
        "nan-energy",
        lambda p: edit(p, _set("totals.energy_j", float("nan"))),
        "not valid JSON: NaN is not a number JSON allows",
    ),
    (
        "infinite-co2",
        lambda p: edit(p, _set("totals.emissions_g", float("inf"))),
        "not valid JSON: Infinity is not a number JSON allows",
    ),
    (
        "negative-energy",
        lambda p: edit(p, _set("totals.energy_j", -5.0)),
        "totals.energy_j: -5.0 is below the minimum 0",
    ),
    (
        "negative-device-energy",
        lambda p: edit(p, lambda d: d["devices"][0].update(energy_j=-1)),
        "devices[0].energy_j: -1 is below the minimum 0",
    ),
    (
        "old-schema",
        lambda p: edit(p, _set("schema_version", "0.9")),
        "schema_version '0.9' is not one this hf-eco2ai reads (1.x, 2.x)",
    ),
    (
        "missing-totals",
        lambda p: edit(p, lambda d: d.pop("totals")),
        "the top level: 'totals' is missing",
    ),
    (
        "wrong-type",
        lambda p: edit(p, _set("run.duration_s", "fast")),
        'run.duration_s: "fast" is not number',
    ),
    (
        "bool-as-number",
        lambda p: edit(p, _set("efficiency.samples", True)),
        "efficiency.samples: true is not integer",
    ),
    (
        "other-json",
        lambda p: p.write_text('{"energy_j": 12}'),
        'not an hf-eco2ai run report (no "schema": "hf-eco2ai/run-report")',
    ),
    ("a-list", lambda p: p.write_text("[1, 2]"), "not an hf-eco2ai run report"),
    ("missing-file", lambda p: p.unlink(), "No such file or directory"),
]


@pytest.mark.parametrize(
    ("spoil", "problem"), [s[1:] for s in SPOILED], ids=[s[0] for s in SPOILED]
)
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_bad_report_is_one_line_naming_the_file_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    spoil: Callable[[Path], object],
    problem: str,
) -> None:
    """Would catch: a ``KeyError``/``ValueError`` traceback, a NaN or negative energy accepted,
    an old-schema report read as if current, or a message that does not name the file."""
    good = valid_report(tmp_path / "good")
    bad = valid_report(tmp_path / "bad")
    spoil(bad)
    argv = ["report", str(bad)] if command == "report" else ["compare", str(good), str(bad)]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hf-eco2ai: {bad}: ")
    assert problem in lines[0]


@pytest.mark.parametrize(
    "case",
    [
        s
        for s in SPOILED
        if s[0]
        in {
            "negative-energy",
            "old-schema",
            "wrong-type",
            "missing-totals",
            "bool-as-number",
            "negative-device-energy",
        }
    ],
    ids=lambda s: s[0],
)
def test_builtin_validator_agrees_with_jsonschema(tmp_path: Path, case: Any) -> None:
    """Would catch: the built-in validator (jsonschema is not a runtime dependency) accepting
    what the shipped schema refuses, or refusing a valid report."""
    path = valid_report(tmp_path)
    schema = load_schema()
    good = json.loads(path.read_text())
    assert schema_problems(good, schema) == []
    jsonschema.validate(good, schema)
    case[1](path)
    bad = json.loads(path.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    assert report_read.report_problem(bad) is not None


def test_the_schema_uses_only_keywords_the_builtin_validator_checks() -> None:
    """Would catch: a schema change (say ``exclusiveMinimum``) the built-in validator would
    silently ignore."""
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                used.add(key)
                if key in {"properties", "$defs"}:
                    for sub in value.values():
                        walk(sub)
                elif key not in {"required", "enum", "const", "type"}:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(load_schema())
    assert used <= SUPPORTED_KEYWORDS, used - SUPPORTED_KEYWORDS


# ------------------------------------------------------------------------------ many reports
N_RUNS = 200


@pytest.fixture
def many_runs(tmp_path: Path) -> tuple[Path, list[Path]]:
    """``N_RUNS`` valid runs in one directory, plus three spoiled ones."""
    out = tmp_path / "runs"
    for k in range(N_RUNS):
        valid_report(out, start_unix=1_700_000_000.0 + k)
    spoiled = [valid_report(out, start_unix=1_600_000_000.0) for _ in range(3)]
    spoiled[0].write_bytes(spoiled[0].read_bytes()[:100])
    edit(spoiled[1], _set("totals.energy_j", float("nan")))
    edit(spoiled[2], _set("schema_version", "0.3"))
    return out, spoiled


class _Counted(dict):  # type: ignore[type-arg]
    alive = 0
    most = 0

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        _Counted.alive += 1
        _Counted.most = max(_Counted.most, _Counted.alive)

    def __del__(self) -> None:
        _Counted.alive -= 1


@pytest.mark.parametrize("form", ["directory", "glob"])
def test_compare_streams_hundreds_of_reports_and_says_which_it_skipped(
    many_runs: tuple[Path, list[Path]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    """Would catch: all reports loaded into memory before comparing, a bad report in a
    directory aborting the whole comparison, or a skipped one not named with its reason."""
    out, spoiled = many_runs
    real_load = report_read.load_report
    _Counted.alive = _Counted.most = 0
    monkeypatch.setattr(report_read, "load_report", lambda p: _Counted(real_load(p)))
    arg = str(out) if form == "directory" else str(out / "*" / "report.json")
    assert cli.main(["compare", arg]) == 0
    text, err = capsys.readouterr()
    assert _Counted.most == 1  # one whole report in memory at a time
    lines = text.splitlines()
    assert len(lines) == 2 + N_RUNS  # header, rule, one line per valid run
    assert lines[2].split()[1:3] == ["2023-11-14", "22:13:20"]  # oldest first
    assert lines[-1].split()[-1] == "+0.0%"
    skipped = [line for line in err.splitlines() if ": skipped: " in line]
    assert len(skipped) == 3, err
    for path, why in zip(
        spoiled,
        [
            "not valid JSON: ",
            "not valid JSON: NaN is not a number JSON allows",
            "schema_version '0.3' is not one this hf-eco2ai reads (1.x, 2.x)",
        ],
        strict=True,
    ):
        assert [line for line in skipped if line.startswith(f"hf-eco2ai: {path}: skipped: {why}")]
    assert f"hf-eco2ai: skipped 3 of {N_RUNS + 3} reports (see above)" in err


def test_compare_with_fewer_than_two_valid_reports_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    valid_report(out)
    assert cli.main(["compare", str(out)]) == 2
    assert (
        capsys.readouterr().err
        == f"hf-eco2ai: {out}: nothing to compare: 1 valid report(s) of 1 found\n"
    )


def test_compare_two_runs_keeps_the_change_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = valid_report(tmp_path / "a", start_unix=1_700_000_000.0)
    b = valid_report(tmp_path / "b", start_unix=1_700_000_100.0)
    edit(b, _set("totals.energy_j", 150.0))
    assert cli.main(["compare", str(b), str(a.parent)]) == 0
    text = capsys.readouterr().out
    assert "change" in text.splitlines()[0]
    assert "+50.0%" in text
