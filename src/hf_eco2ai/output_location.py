"""Where run reports go, and the checks that let a bad location fail at start, not at the end.

``CarbonConfig.output_dir`` is unset by default: reports then go under the framework's own
output location (``<Trainer args.output_dir>/hf-eco2ai``, Lightning's ``default_root_dir``),
and only when there is none under ``./hf-eco2ai-runs``. :func:`resolve_output_dir` is that rule.

An explicit value is expanded (``~``) and made absolute once, when the configuration is built
(:func:`absolute_path`); :func:`length_problem` and :func:`writability_problem` say what would
make writing the report fail, so that ``CarbonConfig`` refuses it at start. Nothing here creates
a directory: writability is probed with a uniquely named file created and removed in the
nearest directory that exists.

Example:
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = os.path.join(tmp, "not", "yet", "there")
    ...     writability_problem(target) is None, os.path.exists(os.path.join(tmp, "not"))
    (True, False)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

NAME_MAX = 255
"""Longest file name in bytes when the file system does not say (``os.pathconf``)."""
PATH_MAX = 4096
"""Longest path in bytes when the file system does not say (Linux's ``PATH_MAX``)."""
RESERVED_BYTES = 128
"""Room kept under the output directory for what a run writes there (``<run id>/report.json.tmp``
and friends), so that a path accepted at start still fits at the end."""
FRAMEWORK_SUBDIR = "hf-eco2ai"
"""The directory created under the framework's own output location."""
FALLBACK_DIR = "hf-eco2ai-runs"
"""The directory, in the working directory, used when neither config nor framework names one."""


def resolve_output_dir(
    config_value: str | os.PathLike[str] | None, framework_dir: str | os.PathLike[str] | None
) -> Path:
    """The absolute directory a run writes its reports to.

    The explicit setting wins (``CarbonConfig.output_dir``, already absolute); else the
    framework's output location + ``/hf-eco2ai``; else ``hf-eco2ai-runs`` in the current
    directory. Call it once, at run start, so that an ``os.chdir`` later changes nothing.

    >>> resolve_output_dir("/data/reports", "/ckpt/run1")
    PosixPath('/data/reports')
    >>> resolve_output_dir(None, "/ckpt/run1")
    PosixPath('/ckpt/run1/hf-eco2ai')
    >>> resolve_output_dir(None, None) == Path.cwd() / "hf-eco2ai-runs"
    True
    """
    if config_value is not None:
        return Path(absolute_path(os.fspath(config_value)))
    if framework_dir is not None and os.fspath(framework_dir) != "":
        return Path(absolute_path(os.fspath(framework_dir))) / FRAMEWORK_SUBDIR
    return Path(os.getcwd()) / FALLBACK_DIR


def absolute_path(text: str) -> str:
    """``text`` with ``~`` expanded, made absolute and normalised (``..`` folded, no symlink
    resolved).

    Raises:
        ValueError: ``~user`` names no known user (the path would be a literal ``./~user``).

    >>> absolute_path("/srv//runs/../reports/")
    '/srv/reports'
    >>> absolute_path("~") == os.path.expanduser("~")
    True
    """
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):
        user = expanded.split(os.sep, 1)[0]
        raise ValueError(f"a path whose '~' names a known user ({user!r} is not one)")
    return os.path.abspath(expanded)


def length_problem(path: str) -> str | None:
    """Why the absolute ``path`` is too long for the file system it would be on, or None.

    A component may be at most ``NAME_MAX`` bytes, and the path, with :data:`RESERVED_BYTES`
    for the run's own files, at most ``PATH_MAX`` (both asked of the nearest existing directory,
    255 and 4096 when it does not say).

    >>> length_problem("/tmp/" + "x" * 300)
    'a path whose components are at most 255 bytes (one has 300)'
    >>> length_problem("/tmp/runs") is None
    True
    """
    anchor = _nearest_existing(path)
    name_max = _pathconf(anchor, "PC_NAME_MAX", NAME_MAX)
    path_max = _pathconf(anchor, "PC_PATH_MAX", PATH_MAX)
    longest = max((len(os.fsencode(part)) for part in Path(path).parts[1:]), default=0)
    if longest > name_max:
        return f"a path whose components are at most {name_max} bytes (one has {longest})"
    size = len(os.fsencode(path))
    if size + RESERVED_BYTES > path_max:
        return (
            f"a path of at most {path_max - RESERVED_BYTES} bytes (PATH_MAX {path_max}, less"
            f" {RESERVED_BYTES} for the run's files); this one has {size}"
        )
    return None


def writability_problem(path: str) -> str | None:
    """Why reports could not be written under the absolute ``path``, or None.

    ``path`` must be a directory, or creatable: its nearest existing ancestor must be a
    directory in which a file can be created. That is probed for real (a file with a unique
    name, created exclusively and removed at once); no directory is created.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as plain_file:
    ...     print(writability_problem(plain_file.name + "/runs").replace(plain_file.name, "F"))
    a location where a directory can be created ('F' is not a directory)
    """
    anchor = _nearest_existing(path)
    if os.path.islink(anchor) and not os.path.exists(anchor):
        return f"a location without broken symbolic links ({anchor!r} points nowhere)"
    if not os.path.isdir(anchor):
        if anchor == path:
            return f"a directory ({path!r} exists and is not a directory)"
        return f"a location where a directory can be created ({anchor!r} is not a directory)"
    import tempfile  # its names come from a private generator, not the global ``random``

    try:
        fd, probe = tempfile.mkstemp(prefix=".hf-eco2ai-write-test-", dir=anchor)
    except OSError as exc:
        return f"a writable location (creating a file in {anchor!r} failed: {exc.strerror or exc})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def _nearest_existing(path: str) -> str:
    """``path`` or its closest ancestor that exists (a dangling symlink counts as existing)."""
    current = path
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _pathconf(path: str, name: str, fallback: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):  # unknown name, no such file, not on Windows
        return fallback
    return value if value > 0 else fallback
