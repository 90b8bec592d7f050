"""Log a warning once per process (configuration facts that do not change between runs)."""

from __future__ import annotations

import logging
import threading

_seen: set[str] = set()
_lock = threading.Lock()


def warn_once(
    logger: logging.Logger, key: str, msg: str, *args: object, level: int = logging.WARNING
) -> None:
    """``logger.log(level, msg, *args)`` the first time ``key`` is seen in this process (at
    ``WARNING`` unless told otherwise), DEBUG after."""
    with _lock:
        if key in _seen:
            logger.debug(msg, *args)
            return
        _seen.add(key)
    logger.log(level, msg, *args)


def reset_once() -> None:
    """Forget what was logged (for tests)."""
    with _lock:
        _seen.clear()
