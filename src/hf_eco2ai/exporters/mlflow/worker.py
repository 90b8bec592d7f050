"""A background worker and an outage reporter, for calls that may hang.

:class:`Worker` runs submitted calls in order on one daemon thread (started on the first call),
each with a :class:`~concurrent.futures.Future` the caller may wait on with a bound; a call
that never returns keeps only that thread. :class:`Health` logs an outage once (a WARNING when
calls start failing, INFO when they work again, DEBUG in between).

Example:
    >>> worker = Worker("hf-eco2ai-mlflow-doc")
    >>> worker.submit(lambda: 6 * 7).result(timeout=5)
    42
    >>> worker.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

WORKER_THREAD_PREFIX = "hf-eco2ai-mlflow-"


class _QuietRetries(logging.Filter):
    """Drop urllib3's per-retry warnings raised on our worker threads.

    While a tracking server is down, MLflow's HTTP client retries each request several times
    and urllib3 warns at every retry; the bridge reports the outage once itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.threadName is not None
            and record.threadName.startswith(WORKER_THREAD_PREFIX)
            and record.levelno <= logging.WARNING
        )


_QUIET = _QuietRetries()


def quiet_http_retries() -> None:
    """Install the filter on urllib3's connection-pool logger (idempotent)."""
    logger = logging.getLogger("urllib3.connectionpool")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)


class Worker:
    """One daemon thread that runs submitted calls in order.

    A daemon thread: a server that never answers cannot keep the process alive. Name it with
    :data:`WORKER_THREAD_PREFIX` to have urllib3's retry warnings on it filtered.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        """Queue ``fn``; its future holds the result or the exception (never raised here)."""
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(RuntimeError("the worker is shut down"))
                return future
            self._jobs.append((fn, future))
            if self._thread is None:
                quiet_http_retries()
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if not self._jobs:
                    return
                fn, future = self._jobs.pop(0)
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the waiting caller, never raised here
                future.set_exception(exc)

    def close(self) -> None:
        """Refuse new calls; the thread ends once the queued ones have run."""
        with self._lock:
            self._closed = True
            self._wake.notify()


@dataclass
class Health:
    """Warn once when calls start failing, say when they recover; debug in between."""

    what: str
    failing: bool = False
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self) -> None:
        """A call succeeded."""
        with self.lock:
            was, self.failing = self.failing, False
            count, self.failures = self.failures, 0
        if was:
            _LOG.info("hf-eco2ai: %s to MLflow works again (%d attempts failed)", self.what, count)

    def failed(self, reason: str, exc: BaseException | None = None) -> None:
        """A call failed: a WARNING the first time of an outage, DEBUG after."""
        with self.lock:
            first = not self.failing
            self.failing = True
            self.failures += 1
        if first:
            _LOG.warning(
                "hf-eco2ai: %s to MLflow failed (%s); training goes on, retrying quietly",
                self.what,
                reason,
            )
        else:
            _LOG.debug("hf-eco2ai: %s to MLflow failed again (%s)", self.what, reason)
        if exc is not None:  # the traceback is for whoever turns on debug logging
            _LOG.debug(
                "hf-eco2ai: %s failure", self.what, exc_info=(type(exc), exc, exc.__traceback__)
            )
