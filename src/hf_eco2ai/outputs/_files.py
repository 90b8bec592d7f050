"""File helpers shared by the outputs: directory and file modes, atomic replacement.

Modes before the umask: the user's umask decides, but nothing is ever writable by others
(a umask of 0 would otherwise make report files in a shared directory editable by anyone).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

DIR_MODE = 0o775
FILE_MODE = 0o664


def makedirs(path: Path) -> None:
    """``mkdir -p`` with :data:`DIR_MODE` for every directory created (umask applies)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=DIR_MODE)


def create(path: Path, mode: str, **kwargs: Any) -> Any:
    """``open(path, mode)`` for writing a new file with :data:`FILE_MODE` (umask applies)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    return open(fd, mode, **kwargs)
