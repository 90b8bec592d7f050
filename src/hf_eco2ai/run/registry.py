"""The open runs of this process, so that none is lost when the process ends or forks.

* **At exit** (``atexit``): a run still open (an exception escaped a Trainer that had an explicit
  callback and no instrumentor, a sweep loop that caught it, ``os._exit`` excepted) is ended at
  its last observed training event, with status ``error`` — or ``interrupted`` when the
  interpreter is exiting because of an uncaught ``KeyboardInterrupt`` — so its spans end and its
  report is written, with the energy of its own window, not of the time until exit.
* **Fork**: a forked child (a DataLoader worker, a user's ``os.fork()``) inherits the parent's
  open runs; they stay the parent's. The child forgets them, and a run ended in a process that
  did not begin it does nothing (no second report, no second CSV row, no span).

Runs are held strongly while open (a run is never lost because the callback that began it was
garbage-collected) and dropped as soon as they end.

Example:
    >>> isinstance(RunNotEnded(), RuntimeError), open_runs()
    (True, [])
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Any, Protocol


class Run(Protocol):
    """What the registry needs of a run (:class:`hf_eco2ai.run.Run`)."""

    session: Any

    @property
    def running(self) -> bool: ...

    def end_at_last_activity(self, error: BaseException) -> Any: ...

    def fail(self, error: BaseException, attrs: Any = None) -> Any: ...


_LOG = logging.getLogger(__name__)


class RunNotEnded(RuntimeError):
    """The process exited while the run was still open (report status ``error``)."""


class InstrumentationRemoved(RuntimeError):
    """``uninstrument()`` was called while the run was open (report status ``interrupted``:
    the run's window ends there, measured, instead of being extrapolated to its real end)."""


_runs: dict[int, tuple[Run, int]] = {}
_lock = threading.Lock()
_at_exit_registered = False


def register(run: Run) -> None:
    """Remember ``run`` (called when it begins) so it is ended at exit if nobody ends it."""
    global _at_exit_registered
    with _lock:
        _runs[id(run)] = (run, os.getpid())
        if not _at_exit_registered:
            _at_exit_registered = True
            atexit.register(_end_open_runs_at_exit)


def unregister(run: Run) -> None:
    """Forget ``run`` (called when it ends)."""
    with _lock:
        _runs.pop(id(run), None)


def open_runs() -> list[Run]:
    """Runs begun in this process (not inherited through fork) and not ended yet."""
    pid = os.getpid()
    with _lock:
        items = list(_runs.values())
    return [run for run, owner in items if owner == pid and run.running]


def end_open_runs(error: BaseException, *, at_last_activity: bool = True) -> int:
    """End every open run of this process with ``error``; the number ended.

    Each run ends at its last observed training event (``at_last_activity``, for runs that
    training has left), or now (a signal arriving while training runs).
    """
    ended = 0
    for run in open_runs():
        try:
            if at_last_activity:
                run.end_at_last_activity(error)
            else:
                run.fail(error)
            ended += 1
        except Exception:
            _LOG.warning("hf-eco2ai: could not end an open run", exc_info=True)
    return ended


def _exit_error() -> BaseException:
    last = getattr(sys, "last_value", None)  # set when an uncaught exception was printed
    if isinstance(last, KeyboardInterrupt):
        return last
    return RunNotEnded("the process exited while the run was still open")


def _end_open_runs_at_exit() -> None:
    try:
        ended = end_open_runs(_exit_error())
        if ended:
            _LOG.warning("hf-eco2ai: %d run(s) still open at exit were ended and reported", ended)
    except BaseException:  # never change how the process exits
        _LOG.debug("hf-eco2ai: ending open runs at exit failed", exc_info=True)


def _forget_in_child() -> None:
    global _runs, _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at fork
    _runs = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
