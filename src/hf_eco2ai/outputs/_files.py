"""Careful file writing shared by the outputs: modes, exclusive temporaries, no link following.

A report directory may be shared (several users, a container running as root): nothing here
follows a planted symbolic link, reuses a predictable temporary name or leaves half a file.

* Modes before the umask: the user's umask decides, but nothing is ever writable by others
  (a umask of 0 would otherwise make report files in a shared directory editable by anyone).
* :func:`write_atomically` writes into a temporary file created exclusively (``O_EXCL``,
  ``O_NOFOLLOW``, an unpredictable name) beside the target, then renames it; on any failure
  the temporary is removed and the target is untouched.
* :func:`make_run_directory` never reuses an existing directory.
* Bytes go out through :func:`write_all` (``os.write``), so a short write or a full disk is
  seen where it happens.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_atomically(Path(d) / "x.txt", b"hello")
    ...     sorted(p.name for p in Path(d).iterdir())
    ['x.txt']
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

DIR_MODE = 0o775
FILE_MODE = 0o664
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_TMP_ATTEMPTS = 16


def makedirs(path: Path) -> None:
    """``mkdir -p`` with :data:`DIR_MODE` for every directory created (umask applies)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=DIR_MODE)


def make_run_directory(base: Path, name: str) -> Path:
    """Create ``base/name`` (``base`` as needed); never reuse an existing one.

    When ``base/name`` exists already (planted, or left by someone else), a new directory
    ``base/name-<random>`` is created instead: its contents are ours alone.
    """
    makedirs(base)
    candidate = base / name
    for _ in range(_TMP_ATTEMPTS):
        try:
            candidate.mkdir(mode=DIR_MODE)
        except FileExistsError:
            candidate = base / f"{name}-{secrets.token_hex(4)}"
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "no free run directory name", str(base / name))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - a regular file never returns 0 for non-empty data
            raise OSError(errno.EIO, "write returned 0")
        view = view[written:]


def create_exclusive(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new file ``directory/<prefix><random>``, opened for writing, created by us alone.

    ``O_CREAT | O_EXCL | O_NOFOLLOW``: a name that exists (a planted file or link) is never
    opened; another random name is tried.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_BINARY
    for _ in range(_TMP_ATTEMPTS):
        path = directory / f"{prefix}{secrets.token_hex(8)}"
        try:
            return os.open(path, flags, FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(directory / prefix))


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the whole new one.

    The temporary (``.<name>.<random>`` beside ``path``) is removed on any failure.
    """
    fd, tmp = create_exclusive(path.parent, f".{path.name}.")
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # renames over a link at ``path``, never through it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
