#!/usr/bin/env python3
"""Check the built distributions before they ship.

Usage: ``python tools/check_wheel.py [DIST_DIR]`` (default ``dist``), after
``python -m build --outdir DIST_DIR``.

Checks that DIST_DIR holds exactly one wheel and one sdist of the version in
``src/hf_eco2ai/version.py``, and that the wheel contains:

- ``hf_eco2ai/__init__.py`` and ``hf_eco2ai/py.typed`` (PEP 561 marker);
- every package data file, i.e. every file under a ``data/`` folder anywhere in
  ``src/hf_eco2ai`` -- the source tree is globbed at run time, so a new table is
  checked without editing this script;
- the entry points that make the package discoverable (``opentelemetry_instrumentor``
  ``hf_eco2ai``, the environment-variable registry and the ``hf-eco2ai`` command).

The sdist must contain ``pyproject.toml`` and the same package data files.
Exits 1 with one line per problem; prints a short summary when all is well.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hf_eco2ai"
PACKAGE_DIR = ROOT / "src" / PACKAGE
REQUIRED_FILES = ("__init__.py", "py.typed")
# group -> {entry point name: object reference}
REQUIRED_ENTRY_POINTS: dict[str, dict[str, str]] = {
    "opentelemetry_instrumentor": {"hf_eco2ai": "hf_eco2ai:HFEco2AIInstrumentor"},
    "opentelemetry_environment_variables": {"hf_eco2ai": "hf_eco2ai.environment_variables"},
    "console_scripts": {"hf-eco2ai": "hf_eco2ai.cli:main"},
    "opentelemetry_metrics_exporter": {"mlflow": "hf_eco2ai.exporters.mlflow:MLflowMetricExporter"},
    "opentelemetry_traces_exporter": {"mlflow": "hf_eco2ai.exporters.mlflow:MLflowSpanExporter"},
    "lightning.pytorch.callbacks_factory": {
        "hf_eco2ai": "hf_eco2ai.integrations.lightning_callback:lightning_callbacks_factory"
    },
    "pytorch_lightning.callbacks_factory": {
        "hf_eco2ai": "hf_eco2ai.integrations.lightning_callback:pytorch_lightning_callbacks_factory"
    },
}
IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}


def source_version() -> str:
    """The version string assigned to ``__version__`` in ``version.py``."""
    tree = ast.parse((PACKAGE_DIR / "version.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise SystemExit(f"check_wheel: no __version__ string in {PACKAGE_DIR / 'version.py'}")


def package_data_files() -> list[str]:
    """Paths (relative to ``src/``, POSIX style) of every file under a ``data/`` folder."""
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*")):
        rel = path.relative_to(PACKAGE_DIR)
        if (
            path.is_file()
            and "data" in rel.parts[:-1]
            and not IGNORED_PARTS.intersection(rel.parts)
            and path.suffix not in IGNORED_SUFFIXES
        ):
            found.append(path.relative_to(PACKAGE_DIR.parent).as_posix())
    return found


def only_one(dist: Path, pattern: str, problems: list[str]) -> Path | None:
    matches = sorted(dist.glob(pattern))
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(m.name for m in matches)
        problems.append(f"expected one {pattern} in {dist}, found {len(matches)}: {names}")
    else:
        problems.append(f"no {pattern} in {dist}")
    return None


def check_version(artifact: Path, version: str, problems: list[str]) -> None:
    if f"-{version}" not in artifact.name:
        problems.append(
            f"{artifact.name}: does not carry version {version} from src/{PACKAGE}/version.py"
        )


def check_wheel(wheel: Path, data_files: list[str], problems: list[str]) -> int:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for required in (f"{PACKAGE}/{name}" for name in REQUIRED_FILES):
            if required not in names:
                problems.append(f"{wheel.name}: missing {required}")
        for data in data_files:
            if data not in names:
                problems.append(f"{wheel.name}: missing package data file {data}")

        ep_files = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        if len(ep_files) != 1:
            problems.append(f"{wheel.name}: expected one *.dist-info/entry_points.txt")
            return len(names)
        parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep case
        parser.read_string(zf.read(ep_files[0]).decode("utf-8"))

    for group, entries in REQUIRED_ENTRY_POINTS.items():
        for name, target in entries.items():
            actual = parser.get(group, name, fallback=None)
            if actual is None:
                problems.append(f"{wheel.name}: no entry point {name!r} in group [{group}]")
            elif actual.strip() != target:
                problems.append(
                    f"{wheel.name}: entry point [{group}] {name} = {actual.strip()!r},"
                    f" expected {target!r}"
                )
    return len(names)


def check_sdist(sdist: Path, data_files: list[str], problems: list[str]) -> None:
    try:
        with tarfile.open(sdist) as tf:
            # members are "<name>-<version>/<path>"
            names = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    except (tarfile.TarError, OSError) as exc:
        problems.append(f"{sdist.name}: cannot be read as a tar.gz ({exc})")
        return
    for required in ["pyproject.toml", *(f"src/{d}" for d in data_files)]:
        if required not in names:
            problems.append(f"{sdist.name}: missing {required}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dist", nargs="?", default="dist", type=Path, help="dist directory")
    args = parser.parse_args(argv)
    dist: Path = args.dist

    problems: list[str] = []
    if not dist.is_dir():
        print(f"check_wheel: {dist} is not a directory (run `python -m build` first)")
        return 1
    version = source_version()
    data_files = package_data_files()

    if not data_files:
        print(f"check_wheel: note: no package data files under src/{PACKAGE}/**/data/")

    wheel = only_one(dist, "*.whl", problems)
    sdist = only_one(dist, "*.tar.gz", problems)
    n_wheel_files = 0
    if wheel is not None:
        check_version(wheel, version, problems)
        n_wheel_files = check_wheel(wheel, data_files, problems)
    if sdist is not None:
        check_version(sdist, version, problems)
        check_sdist(sdist, data_files, problems)

    if problems:
        print(f"check_wheel: FAILED, {len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(
        f"check_wheel: OK: {wheel.name if wheel else '?'} ({n_wheel_files} files,"
        f" {len(data_files)} package data file(s), entry points present),"
        f" {sdist.name if sdist else '?'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
