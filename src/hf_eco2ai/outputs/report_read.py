"""Reading run reports back: strict JSON, checked against the shipped schema, streamed.

``hf-eco2ai report`` and ``hf-eco2ai compare`` read files that may be truncated, edited, from an
older version or not reports at all. :func:`load_report` turns each of those into one
:class:`ReportError` saying what is wrong (never a ``KeyError`` later), rejects ``NaN`` and
``Infinity`` (not JSON, and not an energy), and checks the data against
``hf_eco2ai/data/report.schema.json`` with a small built-in validator of the keywords that
schema uses (``jsonschema`` is not a runtime dependency). :func:`iter_reports` walks files,
run directories, directories of runs and glob patterns one report at a time.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "report.json"
    ...     _ = p.write_text('{"schema": "hf-eco2ai/run-report", "schema_version": "1.0", "x": NaN}')
    ...     try:
    ...         load_report(p)
    ...     except ReportError as exc:
    ...         print(exc.problem)
    not valid JSON: NaN is not a number JSON allows
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from hf_eco2ai.outputs.report_json import JSON_NAME, SCHEMA, load_schema

MAX_REPORT_BYTES = 256 * 1024 * 1024
"""A report is a few kB (its timeline is bounded); anything far larger is not read."""

SUPPORTED_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$ref",
        "title",
        "description",
        "type",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "maximum",
        "minLength",
        "pattern",
        "format",
    }
)
"""The JSON Schema keywords :func:`schema_problems` checks (a test keeps the schema to them)."""


class ReportError(ValueError):
    """``path`` is not a usable run report; ``problem`` says why, in a few words."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a report.json (a run directory holding one is accepted too).

    Raises :class:`ReportError` naming the file and what is wrong: unreadable, not UTF-8,
    truncated or not JSON (``NaN``/``Infinity`` included), not an hf-eco2ai report, a schema
    version this hf-eco2ai does not read, or a value the schema does not allow.
    """
    p = Path(path)
    if p.is_dir():
        p = p / JSON_NAME
    try:
        size = p.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise ReportError(p, f"{size} bytes is too large for a run report")
        raw = p.read_bytes()
    except OSError as exc:
        raise ReportError(p, exc.strerror or repr(exc)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(p, f"not UTF-8 text (byte {exc.start})") from exc
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ReportError(p, f"not valid JSON: {exc.msg} ({where})") from None
    except ValueError as exc:  # NaN / Infinity
        raise ReportError(p, f"not valid JSON: {exc}") from exc
    problem = report_problem(upgrade_report(data))
    if problem is not None:
        raise ReportError(p, problem)
    return dict(data)


def upgrade_report(data: Any) -> Any:
    """A 1.x report in the 2.x shape, in place: ``approximate`` (totals, epochs, evaluations)
    was renamed ``extrapolated`` in 2.0 (it never meant "estimated"; that is ``measured``).

    >>> upgrade_report({"schema_version": "1.2", "totals": {"approximate": True}})["totals"]
    {'extrapolated': True}
    """
    if not isinstance(data, dict) or not str(data.get("schema_version", "")).startswith("1."):
        return data
    parts = [data.get("totals")]
    for key in ("epochs", "evaluations"):
        windows = data.get(key)
        if isinstance(windows, list):
            parts.extend(windows)
    for part in parts:
        if isinstance(part, dict) and "approximate" in part:
            part["extrapolated"] = part.pop("approximate")
    return data


def report_problem(data: Any) -> str | None:
    """What is wrong with ``data`` as a run report, or None when nothing is."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return f'not an hf-eco2ai run report (no "schema": "{SCHEMA}")'
    version = data.get("schema_version")
    if not isinstance(version, str) or not re.fullmatch(r"[12]\.[0-9]+", version):
        return f"schema_version {version!r} is not one this hf-eco2ai reads (1.x, 2.x)"
    problems = schema_problems(data, _schema())
    return problems[0] if problems else None


@functools.cache
def _schema() -> Mapping[str, Any]:
    return load_schema()


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, _TYPES[name])


def _where(path: str) -> str:
    return path or "the top level"


def schema_problems(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, at: str = ""
) -> list[str]:
    """Every way ``value`` breaks ``schema`` (the :data:`SUPPORTED_KEYWORDS` subset).

    >>> schema_problems({"e": -1}, {"properties": {"e": {"type": "number", "minimum": 0}}})
    ['e: -1 is below the minimum 0']
    """
    root = schema if root is None else root
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return schema_problems(value, target, root, at)
    where = _where(at)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in names):
            return [f"{where}: {_show(value)} is not {' or '.join(names)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {_show(value)} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        return [f"{where}: {_show(value)} is not one of {allowed}"]
    problems: list[str] = []
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: {_show(value)} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: {_show(value)} is above the maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{where}: {_show(value)} is shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {_show(value)} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _is_datetime(value):
            problems.append(f"{where}: {_show(value)} is not an ISO 8601 date-time")
    if isinstance(value, dict):
        problems += [
            f"{where}: {k!r} is missing" for k in schema.get("required", ()) if k not in value
        ]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                problems += schema_problems(item, sub, root, f"{at}.{key}" if at else key)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for k, item in enumerate(value):
            problems += schema_problems(item, schema["items"], root, f"{at}[{k}]")
    return problems


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    text = (
        json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    )
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------ many reports
def _is_pattern(arg: str) -> bool:
    return any(c in arg for c in "*?[") and not Path(arg).exists()


def iter_report_paths(args: list[str]) -> Iterator[tuple[Path, bool]]:
    """The report files named by ``args``, one at a time (nothing is listed ahead).

    Each argument is a report.json, a run directory holding one, a directory of run
    directories (``DIR/*/report.json``), or a glob pattern (``runs/*/report.json``, ``**``
    allowed) of any of those. Yields ``(path, named)``: ``named`` is True for a file or run
    directory given as an argument itself (found by a scan or a pattern: False). A named path
    that does not exist is yielded as it is, for the reader to report.
    """
    for arg in args:
        if _is_pattern(arg):
            for match in glob.iglob(arg, recursive=True):
                yield from _expand(Path(match), named=False)
        else:
            yield from _expand(Path(arg), named=True)


def _expand(path: Path, *, named: bool) -> Iterator[tuple[Path, bool]]:
    if not path.is_dir():
        yield path, named
        return
    if (path / JSON_NAME).exists():
        yield path / JSON_NAME, named
        return
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                candidate = Path(entry.path) / JSON_NAME
                if entry.is_dir() and candidate.exists():
                    yield candidate, False
    except OSError:
        yield path / JSON_NAME, named  # unreadable: the reader says why
