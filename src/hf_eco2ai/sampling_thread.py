"""The sampler: one daemon thread that reads every sensor at a fixed interval.

Per tick it reads each device, turns the reading into an energy increment
(:mod:`hf_eco2ai.energy_increments`: hardware counter difference where there is one and it works,
power integrated otherwise), and records the increments in the :class:`~hf_eco2ai.energy_ledger.Ledger`
with the carbon intensity in force. Every read error is contained: the device is marked,
counted, logged once, and retried. Time is ``time.monotonic_ns()``, so wall-clock jumps do not
distort integrals.

Never waits unboundedly on a sensor: reads happen on the sampler thread only; a watchdog thread
(no I/O) marks a device whose read has not returned within :func:`stall_bound_s` ``stalled``
(last good total kept, no longer read), abandons the stuck thread and starts a fresh one;
:meth:`Sampler.stop` and the exit handler wait at most a bound, then do the same.

Idle batching: a tick is its reading (each device's system or driver calls, on time; a sensor
with ``read_raw``/``decode`` does only ``read_raw`` here) and its commit (decoding, integration,
the ledger record: no I/O). While nobody has read the ledger for :data:`IDLE_AFTER` ticks, the
thread keeps its readings and commits them :data:`IDLE_BATCH` at a time; the ledger has any
reader commit the waiting ones first (:meth:`Sampler.flush`), so totals are never stale and are
the same as with every tick committed at once. Why: after a second asleep a tick runs cold and
costs several times more than in a row (docs/benchmarks.md, "Idle cost of the sampler").

Forked children (e.g. DataLoader workers) never run the parent's sampler: ``os.register_at_fork``
marks every sampler as inherited in the child and gives its ledger a fresh lock.

Deferred work: :meth:`Sampler.call_soon` hands a small job (ending a ``measure()`` window's
span, say) to the running sampler thread instead of creating another thread. The job wakes the
thread by releasing the lock it sleeps on, so it runs at once, between ticks: waking for jobs never makes a
tick happen early (ticks stay on their ``interval_s`` grid), and a batch of jobs yields to a tick
that falls due. :meth:`Sampler.run_pending` runs what is queued on the calling thread (stop,
session close, :func:`run_all_pending` at exit and from ``hf_eco2ai.flush()``).

Example:
    >>> from hf_eco2ai.energy_ledger import Ledger
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    >>> s = Sampler([], Ledger([], pue=1.0, history_size=10), interval_s=1.0,
    ...             intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "config")))
    >>> s.tick(); s.ledger.snapshot().seq
    1
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from hf_eco2ai._logging import warn_once
from hf_eco2ai.carbon.intensity import CarbonIntensity, IntensityProvider, StaticIntensity
from hf_eco2ai.energy_increments import (
    MAX_DEVICE_POWER_W,
    DeviceTrack,
    ImplausibleReadingError,
    check_reading,
)
from hf_eco2ai.energy_ledger import DeviceStatus, Ledger
from hf_eco2ai.sensors.base import DeviceLostError, Reading, Sensor
from hf_eco2ai.sensors.process_share import JobScope

__all__ = [
    "IDLE_AFTER",
    "IDLE_BATCH",
    "MAX_DEVICE_POWER_W",
    "ImplausibleReadingError",
    "Sampler",
    "run_all_pending",
    "stall_bound_s",
]

_LOG = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[Sampler] = weakref.WeakSet()

_Entry = str | tuple[int, object, int]
"""One device in a tick taken: its status when it was not read (stalled, lost), else (monotonic
ns of the read, the reading — raw for a split sensor — or the failure's status, the device's
error count after a failure or -1)."""
_RawTick = tuple[int, CarbonIntensity | None, list[_Entry]]
"""A tick taken: (monotonic ns, the intensity in force or None for the last one, entries)."""


def _clamped_interval(interval_s: float, sensors: Sequence[Sensor]) -> float:
    """``interval_s``, or the longest interval every sensor can unwrap its counter over (a
    sensor may say so with a ``max_interval_s`` attribute, e.g. RAPL), with one WARNING."""
    limits = [
        (float(v), s)
        for s in sensors
        if isinstance(v := getattr(s, "max_interval_s", None), (int, float)) and v > 0
    ]
    if not limits:
        return interval_s
    limit, sensor = min(limits, key=lambda item: item[0])
    if interval_s <= limit:
        return interval_s
    warn_once(
        _LOG,
        f"interval-clamped:{interval_s}:{limit}",
        "hf-eco2ai: sample_interval %g s is longer than %s can unwrap its counter over (half"
        " its wrap period at maximum power): sampling every %.3g s instead",
        interval_s,
        type(sensor).__name__,
        limit,
    )
    return limit


STALL_MIN_S = 2.0
IDLE_BATCH = 60
"""While nothing reads the ledger, the sampler thread commits its readings this many at a time
(see :meth:`Sampler.flush`): the readings are taken on time, every interval; only their
arithmetic waits, and any reader of the ledger has it done first."""
IDLE_AFTER = 2
"""Ticks committed and not read by anyone after which the ledger counts as idle."""
_JOB_RETRY_S = 0.005
"""How long the sampler thread waits before looking again at jobs another thread is running."""
WATCHDOG_PERIOD_S = 10.0
"""The watchdog looks for stuck reads at most this often while sampling (a stuck device is
marked within ``stall bound + WATCHDOG_PERIOD_S``; ``stop()`` and run ends check at once)."""
"""A read in flight for longer than ``max(STALL_MIN_S, 2 x interval)`` is stalled."""


def stall_bound_s(interval_s: float) -> float:
    """Seconds a single device read may take before the device is marked stalled.

    >>> stall_bound_s(0.1), stall_bound_s(5.0)
    (2.0, 10.0)
    """
    return max(STALL_MIN_S, 2.0 * interval_s)


class Sampler:
    """Reads ``sensors`` every ``interval_s`` seconds on a daemon thread into ``ledger``.

    Sensor reads happen on the sampler thread only, never on the caller's. A read that does not
    return within :func:`stall_bound_s` marks its device ``stalled`` (see :meth:`check_stalled`):
    the stuck thread is abandoned (it is a daemon, and records nothing if the read ever returns),
    a new one carries on without that device, and :meth:`start`/:meth:`stop` return in bounded
    time whatever a driver does.
    """

    def __init__(
        self,
        sensors: Sequence[Sensor],
        ledger: Ledger,
        *,
        interval_s: float,
        intensity: IntensityProvider,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.sensors = tuple(sensors)
        self.ledger = ledger
        self.interval_s = _clamped_interval(float(interval_s), self.sensors)
        self.stall_after_s = stall_bound_s(self.interval_s)
        ledger.interval_s = self.interval_s
        self.intensity = intensity
        self._clock = clock
        self._tracks = [DeviceTrack(s, i) for s in self.sensors for i in range(len(s.devices))]
        if len(self._tracks) != len(ledger.devices):
            raise ValueError("the ledger must hold exactly the sensors' devices, in order")
        self._n = len(self._tracks)
        self._split = [
            callable(getattr(type(tr.sensor), "read_raw", None))
            and callable(getattr(type(tr.sensor), "decode", None))
            for tr in self._tracks
        ]
        """Per device: the sensor reads in two steps (``read_raw``: the system calls, at the
        tick; ``decode``: the arithmetic, at commit). Looked up on the type, never through an
        instance's ``__getattr__`` (a wrapper must not hand over its inner sensor's)."""
        self._pending: deque[_RawTick] = deque()
        """Readings taken and not committed yet (only while the ledger is idle)."""
        self._flush_lock = threading.Lock()
        """Held while readings are committed (CPU only, never during a read): they are
        committed once each, in the order taken, by the sampler thread or a reader."""
        self._last_intensity: CarbonIntensity | None = (
            intensity.current() if intensity.__class__ is StaticIntensity else None
        )
        """The intensity of the latest commit (a tick taken with None keeps it: a constant
        provider's value, or the last one in force when a provider failed)."""
        ledger.attach_pending(self._pending, self.flush)
        self._utilization: list[float | None] = [None] * self._n
        self._mem_used: list[int | None] = [None] * self._n
        self._mem_limit: list[int | None] = [None] * self._n
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopping = False
        """Mirrors ``_stop`` for the sampler thread (an attribute read, not a method call)."""
        self._watch_wake = threading.Lock()
        """Held while the watchdog sleeps; released by :meth:`stop`."""
        self._wake: threading.Lock | None = None
        """Held while the current sampler thread sleeps between ticks; released by
        :meth:`stop` to wake it (a bare lock: cheaper to wait on than the event)."""
        self._first = threading.Event()
        self._tick_lock = threading.Lock()
        self._book = threading.Lock()
        """Guards changes of ``_era`` and the commit of a tick (integration state, ledger
        record); never held during a sensor read or any I/O."""
        self._era: tuple[int, list[int | None]] = (0, [None] * self._n)
        """The epoch, bumped when a stuck thread is abandoned (a tick of an older epoch records
        nothing), and its reads in flight: device index -> monotonic ns the read started, None
        when none. Replaced as a whole (one reference), so the sampler thread marks its reads
        without taking a lock: the list it writes belongs to its own epoch."""
        self._inherited = False
        self._jobs: deque[Callable[[], object]] = deque()
        """Work handed over by :meth:`call_soon`, run in order on the sampler thread."""
        self._jobs_lock = threading.RLock()
        """Held while jobs run (by the sampler thread or :meth:`run_pending`): a caller of
        :meth:`run_pending` returns only once every job queued before it has finished."""
        self._exit_hooked = False
        self.ticks = 0
        self.read_errors = 0
        """Total failed device reads (also per device in the snapshot)."""
        self.intensity_errors = 0
        self.stalls = 0
        """Devices marked stalled, and sampler threads abandoned with nothing in flight."""
        _LIVE.add(self)

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """True while the sampler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread and wait (at most ~2 stall bounds) for its first reading, so a run
        that begins now starts from a fresh snapshot. Idempotent; a no-op in a forked child."""
        if self._inherited or self.running:
            return
        self._stop.clear()
        self._stopping = False
        self._first.clear()
        self._exit_hooked = False
        self._spawn()
        watch_wake = threading.Lock()
        watch_wake.acquire()
        self._watch_wake = watch_wake
        self._watchdog = threading.Thread(
            target=self._watch, args=(watch_wake,), name="hf-eco2ai-sampler-watchdog", daemon=True
        )
        self._watchdog.start()
        if not self._first.wait(self.stall_after_s + 0.5):
            self.check_stalled(force=True)
            self._first.wait(self.stall_after_s + 0.5)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread; it takes a final reading on its way out, so totals reach the stop
        time. Idempotent. Waits at most ``timeout`` (default: the stall bound, plus one bound
        for a final reading of the devices that still answer); never reads a sensor itself."""
        if self._inherited:
            return
        thread = self._thread
        if thread is None:
            self.run_pending(self.stall_after_s if timeout is None else float(timeout))
            return
        self._stopping = True
        self._stop.set()
        self._wake_up()
        with contextlib.suppress(RuntimeError):  # the watchdog: already released
            self._watch_wake.release()
        bound = self.stall_after_s if timeout is None else float(timeout)
        if thread is threading.current_thread():
            self._thread = None
            return
        thread.join(bound)
        self._thread = None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.join(bound)  # stop() released its lock: it wakes at once; never does I/O
        self.run_pending(bound)  # jobs handed over while the thread was on its way out
        self.flush(bound)  # readings a stuck thread left uncommitted
        if not thread.is_alive():
            return
        self._abandon("the sampler did not stop", bound=bound)
        if any(not (t.stalled or t.lost) for t in self._tracks):
            final = threading.Thread(target=self._one_tick, name="hf-eco2ai-sampler", daemon=True)
            final.start()  # the final reading of the devices that still answer
            final.join(bound)
            if final.is_alive():
                self._abandon("the final reading did not return", bound=bound)

    def check_stalled(self, *, force: bool = False) -> list[str]:
        """The watchdog: mark every device whose read has been in flight longer than the stall
        bound (every device in flight, with ``force``) as stalled; abandon the stuck thread and,
        unless stopping, start a new one. Safe from any thread; O(devices), no sensor I/O.
        Returns the ``hw_id`` of the devices marked."""
        now = self._clock()
        limit = int(self.stall_after_s * 1e9)
        with self._book:
            flight = self._era[1]
            overdue = [
                k for k, t0 in enumerate(flight) if t0 is not None and (force or now - t0 > limit)
            ]
        if not overdue and not force:
            return []
        marked = self._abandon("a read did not return", only=None if force else overdue)
        if self._thread is not None and not self._stop.is_set():
            self._spawn()
        return marked

    def _watch(self, wake: threading.Lock) -> None:
        """The watchdog thread: lives as long as the sampler thread, no sensor I/O. Sleeps on
        a bare lock that :meth:`stop` releases (cheaper to wake from than an event)."""
        period = max(self.stall_after_s, WATCHDOG_PERIOD_S)
        while not wake.acquire(True, period):
            if self._stop.is_set():
                return
            try:
                self.check_stalled()
            except Exception:  # pragma: no cover - must never die noisily
                _LOG.debug("hf-eco2ai: sampler watchdog failed", exc_info=True)

    def _spawn(self) -> None:
        with self._book:
            epoch = self._era[0]
        wake = threading.Lock()
        wake.acquire()
        self._wake = wake
        if self._stop.is_set():
            wake.release()
        self._thread = threading.Thread(
            target=self._run, args=(epoch, wake), name="hf-eco2ai-sampler", daemon=True
        )
        self._thread.start()

    def _wake_up(self) -> None:
        """Wake the sampler thread from its sleep between ticks (idempotent)."""
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # already released
                wake.release()

    def _abandon(
        self, why: str, only: Sequence[int] | None = None, bound: float | None = None
    ) -> list[str]:
        """Retire the current sampler thread (whatever it is stuck in) and mark its devices in
        flight stalled. The ledger keeps their last good totals."""
        with self._book:
            epoch, flight = self._era
            stuck = [
                k for k, t0 in enumerate(flight) if t0 is not None and (only is None or k in only)
            ]
            self._era = (epoch + 1, [None] * self._n)
            self._tick_lock = threading.Lock()  # the stuck thread holds the old one
            for k in stuck:
                self._tracks[k].stalled = True
        self.stalls += max(1, len(stuck))
        names = [self._tracks[k].sensor.devices[self._tracks[k].index].hw_id for k in stuck]
        bound = self.stall_after_s if bound is None else bound
        if stuck:
            note = (
                f"stalled: a read did not return within {bound:g} s; its last good total is"
                " kept and it is no longer read"
            )
            self.ledger.mark_stalled(stuck, note)
            _LOG.warning(
                "hf-eco2ai: %s within %g s on %s: marked stalled, no longer read; its energy"
                " after the last good reading is not counted",
                why,
                bound,
                ", ".join(names),
            )
        else:
            _LOG.warning("hf-eco2ai: %s within %g s (no device read in flight)", why, bound)
        return names

    def _one_tick(self) -> None:
        with self._book:
            epoch = self._era[0]
        self._locked_tick(epoch)

    def _run(self, epoch: int, wake: threading.Lock) -> None:
        if not self._locked_tick(epoch):
            return
        self._first.set()
        clock = self._clock
        interval_ns = int(self.interval_s * 1e9)
        next_t = clock() + interval_ns
        while True:
            due = False
            if not self._jobs:
                delay = (next_t - clock()) / 1e9
                # released by stop() or call_soon(): wakes at once; else times out at the tick
                due = delay <= 0.0 or not wake.acquire(True, delay)
            if self._stopping:
                self._locked_tick(epoch)  # the final reading, up to the stop time
                self._run_jobs(None, wait=False)  # else stop() runs them, after the join
                return
            if self._jobs and not self._run_jobs(next_t, wait=False):
                time.sleep(_JOB_RETRY_S)  # another thread runs them (run_pending)
            if not due and clock() < next_t:
                continue  # woken for jobs: no reading before its time
            if not self._locked_tick(epoch, defer=self.ledger.unread() >= IDLE_AFTER):
                return  # abandoned while stuck: a newer thread has taken over
            now = clock()
            next_t += interval_ns
            if next_t < now:  # a tick took longer than the interval: skip, don't burst
                next_t = now + interval_ns

    # ------------------------------------------------------------------ deferred jobs
    def call_soon(self, job: Callable[[], object]) -> bool:
        """Run ``job()`` on the sampler thread, soon, in the order handed over; True when taken.

        False (nothing queued: run it yourself) when no sampler thread runs here: not started,
        stopping or stopped, or a forked child's copy. The caller pays a queue append and, when
        the thread is asleep, one lock release (~1 µs). The thread wakes at once for it, without
        taking a reading (ticks stay on their grid); jobs that are still queued when a tick
        falls due wait for that tick. A job must be short and must not block: it delays the
        next reading while it runs. Its exceptions are caught and logged once.
        """
        thread = self._thread
        if self._inherited or thread is None or self._stopping or not thread.is_alive():
            return False
        self._jobs.append(job)
        self._wake_up()
        if not self._exit_hooked:
            self._exit_hooked = True
            _hook_exit()
        if self._stopping:  # stop() began meanwhile: it may have drained already
            self.run_pending(self.stall_after_s)
        return True

    def run_pending(self, timeout: float | None = None) -> bool:
        """Run every queued job on the calling thread, after the sampler thread has finished
        the job it is running (at most ``timeout`` s of waiting for it; None: no bound).

        Returns False when that wait timed out (a job is stuck), True otherwise: every job
        handed over before the call has then finished.
        """
        return self._run_jobs(None, timeout=timeout)

    @property
    def pending_jobs(self) -> int:
        """Jobs handed over and not yet started."""
        return len(self._jobs)

    def _run_jobs(
        self, until_ns: int | None, *, wait: bool = True, timeout: float | None = None
    ) -> bool:
        """Run queued jobs, oldest first, until none is left (or, with ``until_ns`` on the
        sampler clock, until the next tick is due). False when another thread runs jobs and
        did not finish in time (``wait=False``: at once; the sampler thread never blocks on
        that, so a stuck :meth:`run_pending` caller cannot stop the readings)."""
        lock = self._jobs_lock
        if not wait:
            got = lock.acquire(blocking=False)
        else:
            got = lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout))
        if not got:
            return False
        jobs = self._jobs
        try:
            while jobs and (until_ns is None or self._clock() < until_ns):
                try:
                    job = jobs.popleft()
                except IndexError:  # pragma: no cover - another thread took the last one
                    break
                try:
                    job()
                except Exception as exc:  # jobs contain their errors; this is the last net
                    warn_once(
                        _LOG,
                        "sampler-job",
                        "hf-eco2ai: deferred work on the sampler thread failed (%s: %s); "
                        "sampling goes on (logged once)",
                        type(exc).__name__,
                        exc,
                    )
        finally:
            lock.release()
        return True

    # ------------------------------------------------------------------ one tick
    def tick(self, *, idle_batching: bool = False) -> None:
        """Read every device once and record the increments (thread-safe; also used by tests).

        ``idle_batching``: as the sampler thread does, leave the reading uncommitted while
        nobody has read the ledger for :data:`IDLE_AFTER` ticks (up to :data:`IDLE_BATCH`
        readings; the next reader of the ledger, or :meth:`flush`, commits them).
        """
        if self._inherited:
            return
        with self._book:
            epoch = self._era[0]
        self._locked_tick(epoch, defer=idle_batching and self.ledger.unread() >= IDLE_AFTER)

    def _locked_tick(self, epoch: int, *, defer: bool = False) -> bool:
        """One tick of ``epoch``; False when that epoch was abandoned (nothing recorded).
        ``defer``: leave the reading to be committed later (:meth:`flush`), up to
        :data:`IDLE_BATCH` readings."""
        with self._tick_lock:
            raw = self._read(epoch)
            if raw is None:
                return False
            with self._book:  # still current? A tick of an abandoned epoch records nothing
                if self._era[0] != epoch:
                    return False
                self.ticks += 1
                if defer and len(self._pending) < IDLE_BATCH - 1:
                    self._pending.append(raw)
                    return True
            with self._flush_lock:
                self._flush_locked()
                self._commit(raw)
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Commit every reading taken and not committed yet, in order, on the calling thread
        (the ledger calls it before a read, so no reader ever sees a stale total). CPU only:
        waits for a commit in progress at most ``timeout`` s (None: no bound); False then."""
        lock = self._flush_lock
        if not lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            self._flush_locked()
        finally:
            lock.release()
        return True

    def _flush_locked(self) -> None:
        pending = self._pending
        while pending:
            try:
                raw = pending.popleft()
            except IndexError:  # pragma: no cover - cleared by a fork meanwhile
                return
            self._commit(raw)

    def _read(self, epoch: int) -> _RawTick | None:
        """The tick's reads, on the sampler thread: each device's reading (a split sensor's
        raw reading, decoded at commit), failures handled; None when ``epoch`` was abandoned."""
        clock = self._clock
        now = clock()
        intensity: CarbonIntensity | None
        provider = self.intensity
        try:
            if provider.__class__ is StaticIntensity:  # never changes: the one in force
                intensity = None
            else:
                provider.maybe_refresh(now / 1e9)
                intensity = provider.current()
        except Exception as exc:  # a provider must never stop sampling
            self.intensity_errors += 1
            if self.intensity_errors == 1:
                _LOG.warning("hf-eco2ai: carbon-intensity provider failed: %r", exc)
            intensity = None  # the last one in force
        era = self._era
        if era[0] != epoch:
            return None
        flight = era[1]  # this epoch's reads in flight, seen by the watchdog
        split = self._split
        entries: list[_Entry] = []
        for k, tr in enumerate(self._tracks):
            if tr.stalled or tr.lost:
                entries.append(DeviceStatus.STALLED if tr.stalled else DeviceStatus.LOST)
                continue
            if self._era is not era:
                return None  # abandoned: a newer thread has taken over
            t = clock()
            flight[k] = t
            failure: BaseException | None = None
            value: object = None
            try:
                if split[k]:
                    value = tr.sensor.read_raw(tr.index)  # type: ignore[attr-defined]
                else:
                    value = check_reading(tr.sensor.read(tr.index))
            except Exception as exc:
                failure = exc
            flight[k] = None
            if self._era is not era:
                return None  # abandoned while this read was stuck: touch nothing
            if failure is not None:
                entries.append((t, self._failed(tr, failure), tr.errors))
                continue
            entries.append((t, value, -1))
        return now, intensity, entries

    def _commit(self, raw: _RawTick) -> None:
        """Record one tick's readings in the ledger (call with ``_flush_lock`` held; no I/O)."""
        now, intensity, entries = raw
        if intensity is None:
            intensity = self._last_intensity or self.ledger.last_intensity()
        self._last_intensity = intensity
        n = self._n
        tracks = self._tracks
        status = [DeviceStatus.OK] * n
        errors = [0] * n
        readings: list[tuple[int, int, Reading]] = []
        split = self._split
        for k, entry in enumerate(entries):
            tr = tracks[k]
            if isinstance(entry, str):  # stalled or lost: not read
                status[k] = entry
                errors[k] = tr.errors
                continue
            t, value, failed = entry
            if failed >= 0:  # the read failed: value is the status
                status[k], errors[k] = str(value), failed
                continue
            if split[k]:
                try:
                    value = check_reading(tr.sensor.decode(tr.index, value))  # type: ignore[attr-defined]
                except Exception as exc:
                    status[k] = self._failed(tr, exc)
                    errors[k] = tr.errors
                    continue
            errors[k] = tr.errors
            readings.append((k, t, value))  # type: ignore[arg-type]
        deltas = [0.0] * n
        powers = [0.0] * n
        scopes: list[JobScope | None] = [None] * n  # job share per device (scope helper)
        faults: list[str] = []
        utilization, mem_used, mem_limit = self._utilization, self._mem_used, self._mem_limit
        with self._book:
            for k, t, reading in readings:
                power = max(0.0, float(reading.power_w))
                powers[k] = power
                scopes[k] = reading.scope
                utilization[k] = reading.utilization
                mem_used[k] = reading.memory_used
                mem_limit[k] = reading.memory_limit
                deltas[k] = self._increment(k, t, reading, power, faults)
            self.ledger.record(
                now,
                deltas,
                powers,
                intensity,
                utilization=utilization,
                memory_used=mem_used,
                memory_limit=mem_limit,
                status=status,
                errors=errors,
                scope=scopes,
            )
        for fault in faults:
            _LOG.warning("hf-eco2ai: %s", fault)

    def _failed(self, tr: DeviceTrack, exc: BaseException) -> str:
        tr.errors += 1
        self.read_errors += 1
        name = tr.sensor.devices[tr.index].hw_id
        if isinstance(exc, DeviceLostError):
            tr.lost = True
            _LOG.warning("hf-eco2ai: device %s lost, no longer measured: %s", name, exc)
            return DeviceStatus.LOST
        kind = type(exc).__name__
        if kind not in tr.logged:
            tr.logged.add(kind)
            _LOG.warning("hf-eco2ai: reading %s failed (%s: %s); retrying", name, kind, exc)
        return DeviceStatus.ERROR

    def _increment(
        self, k: int, t: int, reading: Reading, power: float, faults: list[str]
    ) -> float:
        """The energy (J) of device ``k`` since its previous reading; updates its state (no I/O:
        runs under the bookkeeping lock; a counter fault's message is added to ``faults``)."""
        tr = self._tracks[k]
        info = tr.sensor.devices[tr.index]
        if not tr.counter_fault and info.method is not self.ledger.devices[k].method:
            self.ledger.set_device(k, info)  # the sensor changed method (e.g. NOT_SUPPORTED)
        delta, faulted = tr.increment(t, reading, power, info, self.interval_s)
        if faulted is not None:
            self.ledger.set_device(k, faulted)
            note = faulted.note
            faults.append(f"device {info.hw_id}: {note[note.rfind('counter fault:') :]}")
        return delta

    # ------------------------------------------------------------------ fork safety
    def _after_fork_in_child(self) -> None:
        self._inherited = True
        self._thread = None
        self._watchdog = None
        self._jobs = deque()  # the parent's work (its spans), not the child's
        self._pending.clear()  # the parent's readings: its devices, its time
        self._flush_lock = threading.Lock()
        self._jobs_lock = threading.RLock()
        self._wake = None
        self._tick_lock = threading.Lock()
        self._book = threading.Lock()
        self.ledger.reset_lock()


def _after_fork_in_child() -> None:
    for sampler in list(_LIVE):
        sampler._after_fork_in_child()


def _stop_all_at_exit() -> None:
    for sampler in list(_LIVE):
        try:
            sampler.stop(timeout=1.0)
        except Exception:  # pragma: no cover - interpreter shutdown
            _LOG.debug("hf-eco2ai: sampler stop at exit failed", exc_info=True)


def run_all_pending(timeout: float | None = None) -> bool:
    """Run the queued jobs of every sampler of this process now, on the calling thread
    (:meth:`Sampler.run_pending`); False when one could not finish within ``timeout`` s.

    >>> run_all_pending(timeout=1.0)
    True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for sampler in list(_LIVE):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = sampler.run_pending(left) and done
    return done


def _run_all_pending_at_exit() -> None:
    try:
        run_all_pending(timeout=1.0)
    except Exception:  # pragma: no cover - interpreter shutdown
        _LOG.debug("hf-eco2ai: deferred work at exit failed", exc_info=True)


def _hook_exit() -> None:
    """(Re-)register the exit hook that runs pending jobs. ``atexit`` runs the newest first, so
    registering it again at a sampler's first hand-off puts it before the shutdown hook of any
    tracer provider made earlier (the SDK's ``shutdown_on_exit``): the spans those jobs end still
    reach that provider's exporters."""
    atexit.unregister(_run_all_pending_at_exit)
    atexit.register(_run_all_pending_at_exit)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_all_at_exit)
