"""Where a run's report goes: the framework's own output location unless one is configured.

Example:
    >>> resolve_output_dir(None, "/tmp/out").as_posix()
    '/tmp/out/hf-eco2ai'
    >>> resolve_output_dir("/srv/reports", "/tmp/out").as_posix()
    '/srv/reports'
"""

from __future__ import annotations

import os
from pathlib import Path

FRAMEWORK_SUBDIR = "hf-eco2ai"
"""Reports under a framework's output directory go to this subdirectory of it."""

FALLBACK_DIR = "hf-eco2ai-runs"
"""Reports go to ``./hf-eco2ai-runs`` only when neither a setting nor a framework names a place."""


def resolve_output_dir(
    configured: str | os.PathLike[str] | None, framework_dir: str | os.PathLike[str] | None
) -> Path:
    """The absolute report directory of a run, resolved once, at run start.

    ``configured`` (``CarbonConfig.output_dir``) wins; else ``<framework_dir>/hf-eco2ai`` (the
    Trainer's ``output_dir``, Lightning's ``default_root_dir``); else ``./hf-eco2ai-runs``.
    ``~`` is expanded; relative paths are taken from the current directory now, so a later
    ``os.chdir`` cannot split one run's files between two places.
    """
    if configured is not None and str(configured) != "":
        path = Path(configured).expanduser()
    elif framework_dir is not None and str(framework_dir) != "":
        path = Path(framework_dir).expanduser() / FRAMEWORK_SUBDIR
    else:
        path = Path(FALLBACK_DIR)
    return Path(os.path.abspath(path))
