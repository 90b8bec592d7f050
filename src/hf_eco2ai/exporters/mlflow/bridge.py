"""What the exporters and the processor share: start-up, bounded waits, the queue, health.

Two bounds, told apart:

* **start-up** (:data:`STARTUP_TIMEOUT_ENV`, 120 s by default): importing MLflow, building its
  client and opening a local store (a new sqlite store creates its schema: seconds on a slow
  machine). Calls made meanwhile are queued in order (at most :data:`MAX_QUEUED`; beyond, the
  oldest is dropped and the loss reported); each caller waits at most ``timeout_s`` for the
  start-up and returns "accepted" when it is still going. A start-up that takes longer than its
  bound is reported once and the queue dropped. Shutdown waits for a start-up in progress (up to
  its bound) and writes what was queued, so a program that ends while MLflow starts loses
  nothing.
* **each call** (``timeout_s``, :data:`TIMEOUT_ENV`, 10 s by default): once MLflow is up, a
  caller waits at most this long; a call that finds the previous one still running fails at
  once (metrics are cumulative: the next export carries the totals).

Example:
    >>> bridge = Bridge("doc", "sqlite:///doc.db", None, None, None, timeout_s=5)
    >>> bridge.timeout_s, bridge.startup_timeout_s
    (5, 120.0)
    >>> bridge.shutdown(1.0)  # nothing was sent: MLflow was never imported
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from hf_eco2ai.exporters.mlflow.client import MlflowRuns
from hf_eco2ai.exporters.mlflow.worker import WORKER_THREAD_PREFIX, Health, Worker

_LOG = logging.getLogger(__name__)

TIMEOUT_ENV = "OTEL_PYTHON_HF_ECO2AI_MLFLOW_TIMEOUT"
"""Seconds a caller waits for one MLflow call at most (default 10)."""
DEFAULT_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_ENV = "OTEL_PYTHON_HF_ECO2AI_MLFLOW_STARTUP_TIMEOUT"
"""Seconds MLflow may take to start (import, client, local store creation; default 120)."""
DEFAULT_STARTUP_TIMEOUT_S = 120.0
MAX_QUEUED = 64
"""Calls held while MLflow starts (a minute of exports at a 1 s interval)."""


def env_seconds(name: str, default: float, *, lo: float = 0.1, hi: float = 3600.0) -> float:
    """Seconds from the environment variable ``name``, clamped to [lo, hi]; ``default`` unset.

    >>> env_seconds("HF_ECO2AI_DOC_UNSET_VARIABLE", 10.0)
    10.0
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        _LOG.warning("hf-eco2ai: %s=%r is not a number; using %s s", name, raw, default)
        return default
    return min(max(value, lo), hi)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class Bridge:
    """Target run, worker, start-up, bounded waits and health of one exporter or processor."""

    def __init__(
        self,
        what: str,
        tracking_uri: str | None,
        experiment_name: str | None,
        run_id: str | None,
        run_name: str | None,
        timeout_s: float | None,
        startup_timeout_s: float | None = None,
    ) -> None:
        self.runs = MlflowRuns(tracking_uri, experiment_name, run_id, run_name)
        self.timeout_s = (
            env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, hi=600.0)
            if timeout_s is None
            else timeout_s
        )
        self.startup_timeout_s = (
            env_seconds(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S)
            if startup_timeout_s is None
            else startup_timeout_s
        )
        self.worker = Worker(WORKER_THREAD_PREFIX + what.split()[0])
        self.health = Health(what)
        self.dropped = 0
        """Calls dropped from a full queue while MLflow was starting."""
        self.shut_down = False
        # re-entrant: cancelling a queued call (under the lock) runs its done-callback at once
        self._lock = threading.RLock()
        self._startup: Future[None] | None = None
        self._startup_began = 0.0
        self._queued: list[Future[Any]] = []
        self._inflight: Future[Any] | None = None
        self._stalled: Future[Any] | None = None
        self._awaited: weakref.WeakSet[Future[Any]] = weakref.WeakSet()
        self._reported: weakref.WeakSet[Future[Any]] = weakref.WeakSet()

    # ------------------------------------------------------------------ start-up
    def _start(self) -> Future[None]:
        """The start-up in progress or done; a new one after a failed one (lock held)."""
        startup = self._startup
        if startup is None or (startup.done() and startup.exception() is not None):
            startup = self._startup = self.worker.submit(self.runs.connect)
            self._startup_began = time.monotonic()
        return startup

    def _startup_left(self) -> float:
        return self.startup_timeout_s - (time.monotonic() - self._startup_began)

    def _job(self, fn: Callable[[], Any], startup: Future[None]) -> Callable[[], Any]:
        probe_s = min(2.0, self.timeout_s)
        runs = self.runs

        def job() -> Any:
            if not runs.connected:  # the start-up before this call failed (it ran first)
                cause = startup.exception() if startup.done() else None
                detail = f": {_reason(cause)}" if cause is not None else ""
                raise ConnectionError("MLflow did not start" + detail) from cause
            runs.probe(probe_s)
            return fn()

        return job

    # ------------------------------------------------------------------ calls
    def call(self, fn: Callable[[], Any], timeout_s: float) -> bool:
        """Run ``fn`` on the worker; True when it succeeded within the bound, or is queued
        behind a start-up still in progress (see the module docstring)."""
        limit = max(0.0, min(timeout_s, self.timeout_s))
        future: Future[Any] | None = None
        queued = False
        problem = ""
        with self._lock:
            if self.shut_down:
                return False
            startup = self._start()
            self._queued = [f for f in self._queued if not f.done()]
            if not startup.done() and self._startup_left() < 0:
                problem = f"MLflow did not start within {self.startup_timeout_s:g} s"
                for waiting in self._queued:
                    waiting.cancel()
                self._queued.clear()
            elif self._stalled is not None and not self._stalled.done():
                problem = "the previous call has not returned yet"
            elif not startup.done() or self._queued:
                if len(self._queued) >= MAX_QUEUED:
                    self._queued.pop(0).cancel()
                    self.dropped += 1
                    problem = f"MLflow is still starting; {self.dropped} queued calls dropped"
                future = self.worker.submit(self._job(fn, startup))
                self._awaited.add(future)
                self._queued.append(future)
                queued = True
            elif self._inflight is not None and not self._inflight.done():
                problem = "the previous call has not returned yet"
            else:
                future = self._inflight = self.worker.submit(self._job(fn, startup))
        if problem:
            self.health.failed(problem)
        if future is None:
            return False
        if not queued:
            return self._wait(future, limit)
        # outside the lock: a call already done runs the callback here, and it takes the lock
        future.add_done_callback(self._report)  # its caller may be gone when it ends
        try:
            startup.result(timeout=limit)
        except FutureTimeout:
            _LOG.debug("hf-eco2ai: MLflow is still starting; the call waits in line")
            self._release(future)  # its outcome is reported when it ends
            return True
        except Exception:  # the queued call fails at once, with this error: reported below
            _LOG.debug("hf-eco2ai: MLflow did not start", exc_info=True)
        try:
            future.result(timeout=limit)
        except FutureTimeout:
            with self._lock:
                self._stalled = future  # calls fail at once until it returns
            self.health.failed(f"no answer within {limit:.1f} s")
            self._release(future)
            return False
        except Exception:
            _LOG.debug("hf-eco2ai: a queued MLflow call failed", exc_info=True)
        return self._release(future)

    def _wait(self, future: Future[Any], limit: float) -> bool:
        try:
            future.result(timeout=limit)
        except FutureTimeout:
            self.health.failed(f"no answer within {limit:.1f} s")
            return False
        except Exception as exc:
            self.health.failed(_reason(exc), exc)
            return False
        self.health.ok()
        return True

    # A queued call's outcome is reported once: by its caller while it waits, else when it ends.
    def _release(self, future: Future[Any]) -> bool:
        """The caller stops waiting for a queued call; reports its outcome if it has one."""
        with self._lock:
            self._awaited.discard(future)
            if not future.done() or future in self._reported:
                return False
            self._reported.add(future)
        return self._outcome(future)

    def _report(self, future: Future[Any]) -> None:
        """Done-callback of a queued call (worker thread): report it unless its caller does."""
        with self._lock:
            if future in self._awaited or future in self._reported:
                return
            self._reported.add(future)
        self._outcome(future)

    def _outcome(self, future: Future[Any]) -> bool:
        if future.cancelled():
            return False  # dropped: reported then
        exc = future.exception()
        if exc is not None:
            self.health.failed(_reason(exc), exc)
            return False
        self.health.ok()
        return True

    def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) until the calls queued during start-up are written."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            startup, queued = self._startup, list(self._queued)
        if startup is not None and not startup.done():
            with contextlib.suppress(Exception):
                startup.result(timeout=max(0.0, deadline - time.monotonic()))
        for future in queued:
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.0, deadline - time.monotonic()))
        return all(f.done() for f in queued)

    def shutdown(self, timeout_s: float) -> None:
        """Write what was queued, end the run this bridge created (bounded), stop the worker.

        A start-up still in progress is waited for up to its own bound: the data of a short
        program that ends while MLflow starts are written, not dropped.
        """
        with self._lock:
            startup, queued = self._startup, list(self._queued)
        if startup is not None and not startup.done():
            try:
                startup.result(timeout=max(0.0, self._startup_left()))
            except FutureTimeout:
                self.health.failed(f"MLflow did not start within {self.startup_timeout_s:g} s")
            except Exception as exc:
                self.health.failed(_reason(exc), exc)
        with self._lock:
            inflight, stalled = self._inflight, self._stalled
        stuck = next((f for f in (stalled, inflight) if f is not None and not f.done()), None)
        if stuck is not None:
            # a call MLflow has not answered: give it a moment; its outcome was reported
            with contextlib.suppress(Exception):
                stuck.result(timeout=min(timeout_s, 1.0))
        elif queued:
            self.flush(timeout_s)
        calls = [*queued, *([inflight] if inflight is not None else [])]
        if self.runs.created_run_id is not None and all(f.done() for f in calls):
            self.call(self.runs.end_created_run, timeout_s)
        with self._lock:
            self.shut_down = True
        self.worker.close()
