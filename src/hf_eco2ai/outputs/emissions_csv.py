"""``emissions.csv``: one row per run with eco2ai's columns, appended under a file lock.

Example:
    >>> from hf_eco2ai.outputs.emissions_csv import csv_safe
    >>> csv_safe("=HYPERLINK(...)")
    "'=HYPERLINK(...)"
"""

from __future__ import annotations

import csv
import errno
import io
import os
import platform
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hf_eco2ai.outputs._files import (
    FILE_MODE,
    O_BINARY,
    O_CLOEXEC,
    O_NOFOLLOW,
    makedirs,
    write_all,
)

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not block the training thread

CSV_NAME = "emissions.csv"
CSV_COLUMNS = (
    "id",
    "project_name",
    "experiment_description",
    "epoch",
    "start_time",
    "duration(s)",
    "power_consumption(kWh)",
    "CO2_emissions(kg)",
    "CPU_name",
    "GPU_name",
    "OS",
    "region/country",
    "cost",
)
"""eco2ai's emissions.csv header, so its users' tooling reads ours."""

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """Neutralise spreadsheet formulas in a text cell (CSV injection).

    A carriage return becomes a line feed: the writer (``lineterminator="\\n"``) does not quote a
    cell for a bare CR, which readers take as the end of the row, so text after it would start
    a row of its own (and could be a formula).
    """
    safe = "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    return safe.replace("\r\n", "\n").replace("\r", "\n")


def csv_row(report: Mapping[str, Any]) -> list[str]:
    """The eco2ai-compatible row of a report, in eco2ai's formats (eco2ai 0.3).

    ``epoch`` is ``N/A``, what eco2ai writes for a row that is not one training epoch (ours
    covers the whole run; its epochs are in report.json); ``start_time`` is local time as
    ``%Y-%m-%d %H:%M:%S``; ``cost`` is empty (no electricity price is configured), so that
    eco2ai's and pandas' numeric ``cost`` column stays numeric.
    """
    run, totals, carbon = report["run"], report["totals"], report["carbon"]
    cpus = sorted({d["name"] for d in report["devices"] if d["hw_type"] == "cpu"})
    gpus = sorted({d["name"] for d in report["devices"] if d["hw_type"] == "gpu"})
    return [
        run["id"],
        csv_safe(str(run["project_name"])),
        csv_safe(str(run["experiment_description"])),
        "N/A",
        eco2ai_time(run["start"]),
        f"{run['duration_s']:.3f}",
        format(totals["energy_kwh"], ".12g"),
        format(totals["emissions_g"] / 1000.0, ".12g"),
        csv_safe(" / ".join(cpus) or "N/A"),
        csv_safe(" / ".join(gpus) or "N/A"),
        csv_safe(f"{platform.system()} {platform.release()}".strip()),
        csv_safe(str(carbon["zone"])),
        "",
    ]


def eco2ai_time(iso: str) -> str:
    """An ISO 8601 time as eco2ai's ``start_time``: local time, ``%Y-%m-%d %H:%M:%S``.

    >>> import time
    >>> eco2ai_time("1970-01-01T00:00:00+00:00") == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(0))
    True
    """
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


class RefusedFile(OSError):
    """An existing ``emissions.csv`` that hf-eco2ai will not append to, and why."""


def encode_rows(*rows: Sequence[str]) -> bytes:
    """CSV lines (``\n``-terminated) as UTF-8; text that cannot be encoded (lone surrogates
    from undecodable environment bytes) is written as visible ``\\x..`` escapes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8", errors="backslashreplace")


def append_csv(path: Path, row: Sequence[str]) -> None:
    """Append ``row`` (header first if the file is new) under an exclusive file lock.

    All or nothing: the row goes out in one piece starting on a line of its own (a newline
    first if the file does not end with one), and on any failure the file is cut back to its
    previous length. Refused (:class:`RefusedFile`) when ``path`` is a symbolic link, not a
    regular file, or not owned by the current user: a planted file in a shared directory
    never receives our rows, whatever it points to.
    """
    makedirs(path.parent)
    line = encode_rows(row)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_BINARY | _O_NONBLOCK
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise RefusedFile(errno.ELOOP, "is a symbolic link, not followed", str(path)) from exc
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise RefusedFile(exc.errno, "is not a regular file", str(path)) from exc
        raise
    try:
        _check_ours(fd, path)
        _lock(fd)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            if size == 0:
                data = encode_rows(CSV_COLUMNS) + line
            elif _last_byte(fd, size) != b"\n":
                data = b"\n" + line  # a partial last line (an older writer): start afresh
            else:
                data = line
            try:
                write_all(fd, data)
            except BaseException:
                os.ftruncate(fd, size)  # nothing of this row stays behind
                raise
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _last_byte(fd: int, size: int) -> bytes:
    os.lseek(fd, size - 1, os.SEEK_SET)  # appends still go to the end (O_APPEND)
    return os.read(fd, 1)


def _check_ours(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(errno.EINVAL, "is not a regular file", str(path))
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and st.st_uid != geteuid():
        raise RefusedFile(
            errno.EPERM,
            f"is owned by uid {st.st_uid}, not by this user (uid {geteuid()})",
            str(path),
        )


def _lock(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]


def _unlock(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
