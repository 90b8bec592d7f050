"""Hostile files: a full disk and planted links never corrupt a report or touch another file.

Issue 15 §2-§3. The run's outputs are written by ``hf_eco2ai.outputs.write_run_report`` from a
:class:`~hf_eco2ai.record.RunRecord`; these tests build one directly (no training needed) and
plant what an operator of a shared output directory can meet: a disk that fills up in the
middle of a row, an ``emissions.csv`` that is a symbolic link or someone else's file, links at
the temporary names the writers used to use.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import logging
import multiprocessing
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from hf_eco2ai.outputs import write_run_report
from hf_eco2ai.outputs.emissions_csv import CSV_COLUMNS, append_csv
from hf_eco2ai.outputs.power_png import render_png
from hf_eco2ai.outputs.report_read import load_report
from tests.fakes.run_record import record

PRECIOUS = b"someone else's file\n"


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def assert_row_aligned(path: Path, ids: list[str]) -> None:
    """The header, then one whole row per run id, in order."""
    rows = csv_rows(path)
    assert rows[0] == list(CSV_COLUMNS)
    assert [r[0] for r in rows[1:]] == ids
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)
    assert path.read_bytes().endswith(b"\n")


def leftovers(directory: Path) -> list[str]:
    """Temporary files left anywhere under ``directory`` (hidden names or ``*.tmp``)."""
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.name.startswith(".") or p.name.endswith(".tmp")
    )


# ------------------------------------------------------------------------------ full disk
def _write_with_file_size_limit(out: str, run_id: str, room: int) -> None:
    """In a child: files may grow ``room`` bytes past emissions.csv's size, then EFBIG."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
    logging.disable(logging.CRITICAL)  # stderr may be a file over the limit too
    limit = os.path.getsize(Path(out) / "emissions.csv") + room
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    row = [run_id] + ["x"] * (len(CSV_COLUMNS) - 1)
    with contextlib.suppress(OSError):  # expected; what matters is what it left in the file
        append_csv(Path(out) / "emissions.csv", row)  # the row alone: it fails part-way
    try:
        write_run_report(record(run_id), out)  # report.json fails part-way, then the row
    except BaseException:
        os._exit(3)  # an error escaped the writer: training would have seen it
    os._exit(0)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and fork: Linux")
def test_disk_full_in_the_middle_of_a_row_leaves_the_csv_row_aligned(tmp_path: Path) -> None:
    """Would catch: a failed append leaving a partial row without a newline, the next run's row
    glued onto it (an id pointing at no run), a zero-byte ``report.json.tmp`` left behind, or
    the error escaping to the training code. The file size limit (``RLIMIT_FSIZE``) fails real
    writes part-way, whatever API the writer uses."""
    out = tmp_path / "runs"
    first = record()
    write_run_report(first, out, png=False)
    before = (out / "emissions.csv").read_bytes()
    failed_id = uuid.uuid4().hex
    child = multiprocessing.get_context("fork").Process(
        target=_write_with_file_size_limit, args=(str(out), failed_id, 6)
    )
    child.start()
    child.join(60)
    assert (out / "emissions.csv").read_bytes() == before  # not 6 bytes of a row
    assert leftovers(out) == []
    assert not (out / failed_id / "report.json").exists()
    assert child.exitcode == 0, "an error escaped write_run_report"
    second = write_run_report(record(), out, png=False)
    assert_row_aligned(out / "emissions.csv", [first.run_id, second.report["run"]["id"]])


def test_enospc_after_n_bytes_rolls_the_row_back_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Would catch: a row half written when the disk fills (``os.write`` accepting 10 bytes,
    then ``ENOSPC``), or the loss not reported as one WARNING naming the file."""
    path = tmp_path / "emissions.csv"
    first = ["first"] + ["x"] * (len(CSV_COLUMNS) - 1)
    append_csv(path, first)
    before = path.read_bytes()
    real_write, room = os.write, [10]

    def disk_fills(fd: int, data: Any) -> int:
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[: room[0]]))
        room[0] -= n
        return n

    monkeypatch.setattr(os, "write", disk_fills)
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")
    failed = write_run_report(record(), tmp_path, png=False)
    monkeypatch.undo()
    assert failed.csv_path is None
    assert path.read_bytes() == before
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [w for w in warnings if str(path) in w] == [
        f"hf-eco2ai: could not write {path}: {os.strerror(errno.ENOSPC)}"
    ]
    assert leftovers(tmp_path) == []
    nxt = write_run_report(record(), tmp_path, png=False)
    assert_row_aligned(path, ["first", nxt.report["run"]["id"]])


def test_a_row_after_a_partial_last_line_starts_on_a_line_of_its_own(tmp_path: Path) -> None:
    """Would catch: a new row glued onto a partial row an older writer left (the 38-character
    id of issue 15 §2)."""
    out = tmp_path / "runs"
    first = write_run_report(record(), out, png=False)
    with open(out / "emissions.csv", "ab") as handle:
        handle.write(b"0a1b2c")  # what a crashed writer left: no newline
    second = write_run_report(record(), out, png=False)
    rows = csv_rows(out / "emissions.csv")
    assert [r[0] for r in rows[1:]] == [
        first.report["run"]["id"],
        "0a1b2c",
        second.report["run"]["id"],
    ]
    assert len(rows[-1]) == len(CSV_COLUMNS)


# ------------------------------------------------------------------------------ planted files
def test_planted_emissions_csv_symlink_is_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Would catch: a row appended to whatever file a planted ``emissions.csv`` link points at
    (the training process is often root in a container)."""
    out = tmp_path / "shared"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    (out / "emissions.csv").symlink_to(victim)
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")
    written = write_run_report(record(), out, png=False)
    assert victim.read_bytes() == PRECIOUS
    assert (out / "emissions.csv").is_symlink()
    assert written.csv_path is None
    assert written.json_path is not None and written.json_path.exists()  # the rest is written
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"hf-eco2ai: could not write {out / 'emissions.csv'}: is a symbolic link, not followed"
    ]


def test_emissions_csv_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Would catch: appending to an ``emissions.csv`` that another user owns in a shared
    directory (here: the file's owner differs from the effective user id)."""
    path = tmp_path / "emissions.csv"
    path.write_bytes(PRECIOUS)
    owner = path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    caplog.set_level(logging.WARNING, logger="hf_eco2ai")
    written = write_run_report(record(), tmp_path, png=False)
    assert path.read_bytes() == PRECIOUS
    assert written.csv_path is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert f"owned by uid {owner}" in warnings[0]


@pytest.mark.parametrize("name", ["report.json.tmp", "power.png.tmp"])
def test_planted_links_at_temporary_names_are_not_followed(tmp_path: Path, name: str) -> None:
    """Would catch: a planted ``report.json.tmp``/``power.png.tmp`` link in the run directory
    getting its target overwritten (and the final name becoming a link to it), or the writer
    reusing a run directory that exists already."""
    out = tmp_path / "shared"
    run_id = uuid.uuid4().hex
    planted = out / run_id
    planted.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    (planted / name).symlink_to(victim)
    written = write_run_report(record(run_id), out, png=True)
    assert victim.read_bytes() == PRECIOUS
    assert sorted(p.name for p in planted.iterdir()) == [name]  # the planted directory untouched
    assert written.directory != planted
    assert written.directory.name.startswith(run_id)
    report = load_report(written.directory)
    assert report["run"]["id"] == written.directory.name  # the id names its directory
    assert csv_rows(out / "emissions.csv")[1][0] == written.directory.name
    for final in ("report.json", "power.png"):
        assert not (written.directory / final).is_symlink()
        assert (written.directory / final).is_file()
    assert leftovers(out) == [f"{run_id}/{name}"]


def test_redrawing_power_png_does_not_follow_a_planted_temporary(tmp_path: Path) -> None:
    """Would catch: ``hf-eco2ai report --png`` (an existing run directory, so no fresh
    directory protects it) writing through a planted ``power.png.tmp`` link."""
    written = write_run_report(record(), tmp_path, png=False)
    victim = tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    (written.directory / "power.png.tmp").symlink_to(victim)
    assert render_png(written.report, written.directory / "power.png")
    assert victim.read_bytes() == PRECIOUS
    png = written.directory / "power.png"
    assert not png.is_symlink()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
