"""Process lifecycle: a run still open when the process ends is ended, and reported.

* **SIGTERM** (the instrumentor, ``handle_sigterm=True``, the default): Python's default action
  for SIGTERM kills the process at once, without ``finally`` blocks or ``atexit`` handlers, so an
  open run would lose its spans and its report. :meth:`SigtermHandler.install` installs a handler
  only when none is installed (the default action is in force) and only from the main thread.
  On SIGTERM it ends every open run of this process with status ``interrupted``
  (:class:`Terminated`; spans end with status ERROR), writes the reports and flushes the
  telemetry providers, all within :data:`SIGTERM_GRACE_S`; then it restores the default action
  and re-raises the signal, so the process still dies of SIGTERM (exit status -15, or 143 from a
  shell) exactly as it would have without hf-eco2ai. A handler installed later by someone else
  (Lightning's, transformers' JIT checkpointing) replaces it or calls it as part of its own;
  called that way it does nothing: the other handler's policy applies, and the training loop's
  exception path ends the run. Forked children (DataLoader workers) get the default action back.
* **At exit** (``atexit``): every run of this process still open (an exception escaped a Trainer
  with an explicit callback and no instrumentor to see it, ``os._exit`` excepted) is ended with
  status ``error`` (:class:`RunNotEnded`), so its spans end and its report is written.

Example:
    >>> isinstance(Terminated(), SystemExit), isinstance(RunNotEnded(), RuntimeError)
    (True, True)
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hf_eco2ai.telemetry.spans import RunTelemetry

_LOG = logging.getLogger(__name__)

SIGTERM_GRACE_S = 5.0
"""Most seconds spent ending runs, writing reports and flushing telemetry on SIGTERM (well
inside the usual grace periods: ``docker stop`` 10 s, Kubernetes and Slurm 30 s)."""


class Terminated(SystemExit):
    """The run was ended by SIGTERM (report status ``interrupted``)."""


class RunNotEnded(RuntimeError):
    """The process exited while the run was still open (report status ``error``)."""


_runs: weakref.WeakKeyDictionary[RunTelemetry, int] = weakref.WeakKeyDictionary()
_runs_lock = threading.Lock()
_at_exit_registered = False
_exiting = False


def background_work_allowed() -> bool:
    """False once the interpreter runs its exit handlers: non-daemon threads started then are
    not waited for, so report files must be written on the calling thread."""
    return not _exiting


def track_run(run: RunTelemetry) -> None:
    """Remember ``run`` (called when it begins) so it can be ended at SIGTERM or exit."""
    global _at_exit_registered
    with _runs_lock:
        _runs[run] = os.getpid()
        if not _at_exit_registered:
            _at_exit_registered = True
            atexit.register(_end_open_runs_at_exit)


def open_runs() -> list[RunTelemetry]:
    """Runs begun in this process (not inherited through fork) and not ended yet."""
    pid = os.getpid()
    with _runs_lock:
        items = list(_runs.items())
    return [run for run, owner in items if owner == pid and run.running]


def end_open_runs(error: BaseException) -> int:
    """End every open run of this process with ``error``; the number ended."""
    ended = 0
    for run in open_runs():
        try:
            run.end_run({}, error)
            ended += 1
        except Exception:
            _LOG.warning("hf-eco2ai: could not end an open run", exc_info=True)
    return ended


def _end_open_runs_at_exit() -> None:
    global _exiting
    _exiting = True
    ended = end_open_runs(RunNotEnded("the process exited while the run was still open"))
    if ended:
        _LOG.warning("hf-eco2ai: %d run(s) still open at exit ended with status error", ended)


def flush_providers(*providers: Any) -> Callable[[float], None]:
    """A function flushing each provider that has ``force_flush`` (SDK providers), in order."""

    def flush(timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for provider in providers:
            force_flush = getattr(provider, "force_flush", None)
            left = deadline - time.monotonic()
            if callable(force_flush) and left > 0:
                try:
                    force_flush(int(left * 1000))
                except Exception:
                    _LOG.debug("hf-eco2ai: flushing %r failed", provider, exc_info=True)

    return flush


class SigtermHandler:
    """The SIGTERM handler described in the module docstring; see :meth:`install`."""

    _installed: SigtermHandler | None = None

    def __init__(self, flush: Callable[[float], None]) -> None:
        self._flush = flush
        self._pid = os.getpid()
        self._busy = False
        self.callable = self._handle
        """The exact object installed with ``signal.signal`` (compared by identity)."""

    @classmethod
    def install(cls, flush: Callable[[float], None]) -> SigtermHandler | None:
        """Install the handler when SIGTERM has its default action; else None (and no change)."""
        if threading.current_thread() is not threading.main_thread():
            _LOG.debug("hf-eco2ai: not in the main thread; no SIGTERM handler installed")
            return None
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_DFL:  # a Python handler, SIG_IGN, or None (one set in C)
            _LOG.debug("hf-eco2ai: a SIGTERM handler is already installed (%r); kept", previous)
            return None
        handler = cls(flush)
        signal.signal(signal.SIGTERM, handler.callable)
        cls._installed = handler
        return handler

    def uninstall(self) -> None:
        """Restore the default action if this handler is still the installed one."""
        if SigtermHandler._installed is self:
            SigtermHandler._installed = None
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is self.callable:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signal.getsignal(signum) is not self.callable:
            return  # called by another handler that replaced this one: its policy applies
        if self._busy or os.getpid() != self._pid:
            self._die(signum)
            return
        self._busy = True
        worker = threading.Thread(target=self._finish, name="hf-eco2ai-sigterm", daemon=True)
        worker.start()
        worker.join(SIGTERM_GRACE_S)
        if worker.is_alive():
            _LOG.warning("hf-eco2ai: SIGTERM clean-up did not finish in %g s", SIGTERM_GRACE_S)
        self._die(signum)

    def _finish(self) -> None:
        started = time.monotonic()
        ended = end_open_runs(Terminated(f"received signal {signal.Signals.SIGTERM.name}"))
        if ended:
            _LOG.warning("hf-eco2ai: SIGTERM: %d open run(s) ended and reported", ended)
        deadline = started + SIGTERM_GRACE_S - 0.5
        self._flush(max(0.1, deadline - time.monotonic()))

    @staticmethod
    def _die(signum: int) -> None:
        """The default action: restore it and re-raise the signal."""
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        raise SystemExit(128 + signum)  # only reached if the signal is blocked


def _reset_in_child() -> None:
    """A forked child (e.g. a DataLoader worker) gets SIGTERM's default action back."""
    handler = SigtermHandler._installed
    if handler is None:
        return
    SigtermHandler._installed = None
    try:
        if signal.getsignal(signal.SIGTERM) is handler.callable:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # pragma: no cover - not the main thread of the child
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
