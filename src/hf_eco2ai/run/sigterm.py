"""Opt-in SIGTERM handling (``handle_sigterm=True``; off by default).

Python's default action for SIGTERM kills the process at once, without ``finally`` blocks or
``atexit`` handlers, so a run open at that moment loses its spans and its report. With
``handle_sigterm=True`` the instrumentor installs :class:`SigtermHandler` — only when SIGTERM
has its default action and only from the main thread. On SIGTERM it ends every open run of this
process with status ``interrupted`` (:class:`Terminated`), writes the reports and flushes the
telemetry providers, all within :data:`SIGTERM_GRACE_S`; then it restores the default action and
re-raises the signal, so the process still dies of SIGTERM (exit status -15, or 143 from a
shell). A handler installed later by someone else (Lightning's, a SLURM requeue handler)
replaces it or calls it as part of its own; called that way it does nothing, and the training
loop's exception path ends the run. ``uninstrument()`` restores the default action; forked
children get the default action back.

It is off by default because a process-wide handler is visible to the program: Lightning's
signal connector chains it into its own handling (and its tests see it). Without it, a SIGTERM
kills the process as usual and the open run's report is not written (see ``docs/reliability.md``).

Example:
    >>> isinstance(Terminated(), SystemExit)
    True
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from hf_eco2ai.run.registry import end_open_runs
from hf_eco2ai.sampling_thread import run_all_pending

_LOG = logging.getLogger(__name__)

SIGTERM_GRACE_S = 5.0
"""Most seconds spent ending runs, writing reports and flushing telemetry on SIGTERM (well
inside the usual grace periods: ``docker stop`` 10 s, Kubernetes and Slurm 30 s)."""


class Terminated(SystemExit):
    """The run was ended by SIGTERM (report status ``interrupted``)."""


def flush_providers(*providers: Any) -> Callable[[float], None]:
    """A function flushing each provider that has ``force_flush`` (SDK providers), in order,
    after ending the spans of closed ``measure()`` windows still queued on the sampler thread."""

    def flush(timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        try:  # spans of measure() windows still being ended on the sampler thread, first
            run_all_pending(timeout_s / 2)
        except Exception:
            _LOG.debug("hf-eco2ai: finishing pending windows failed", exc_info=True)
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
        error = Terminated(f"received signal {signal.Signals.SIGTERM.name}")
        ended = end_open_runs(error, at_last_activity=False)
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
