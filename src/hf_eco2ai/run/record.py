"""From a finished run to its :class:`~hf_eco2ai.record.RunRecord`, and on to the outputs.

The run builds the record (the facts); the outputs format it (``report.json``,
``emissions.csv``, ``power.png``, the printed summary). Nothing here measures.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

from hf_eco2ai.energy_ledger import Snapshot
from hf_eco2ai.energy_windows import EnergyWindow, device_energies, shared_host_note
from hf_eco2ai.outputs import print_summary, write_run_report
from hf_eco2ai.record import DeviceTotal, RunRecord
from hf_eco2ai.run.registry import InstrumentationRemoved
from hf_eco2ai.telemetry import attributes as A
from hf_eco2ai.telemetry.spans import OpenSpan


class Run(Protocol):
    """The facts of a finished run that its record is built from (:class:`hf_eco2ai.run.Run`)."""

    framework: str
    run_name: str
    config: Any
    counters: Any
    session: Any
    segments: Any
    projector: Any
    rank: Any

    @property
    def ended_late(self) -> bool: ...

    @property
    def start_unix(self) -> float: ...


_LOG = logging.getLogger("hf_eco2ai")


def run_status(error: BaseException | None) -> tuple[str, str | None]:
    """``(status, error_type)`` of a run ended with ``error``.

    >>> run_status(None), run_status(KeyboardInterrupt()), run_status(ValueError())
    (('ok', None), ('interrupted', 'KeyboardInterrupt'), ('error', 'ValueError'))
    """
    if error is None:
        return "ok", None
    interrupted = isinstance(error, (KeyboardInterrupt, SystemExit, InstrumentationRemoved))
    return ("interrupted" if interrupted else "error"), type(error).__qualname__


def build_record(
    run: Run,
    opened: OpenSpan,
    end_snap: Snapshot,
    window: EnergyWindow,
    error: BaseException | None,
) -> RunRecord:
    """The record of ``run``, whose run span ``opened`` just ended with ``window``."""
    end_ns = opened.t_ns + int(window.duration_s * 1e9)
    before = device_energies(opened.snap, opened.t_ns)
    after = device_energies(end_snap, end_ns)
    # energies at the run's end; device facts (status, errors, method) as they are now: a run
    # ended at its last training event still says a device stalled after it
    now = run.session.monitor.snapshot().devices
    facts = now if len(now) == len(end_snap.devices) else end_snap.devices
    devices = [
        DeviceTotal(
            facts[k].info,
            max(0.0, after[k] - (before[k] if k < len(before) else 0.0)),
            facts[k].status,
            facts[k].errors,
        )
        for k in range(len(end_snap.devices))
    ]
    status, error_type = run_status(error)
    config = run.config
    attributes = dict(opened.attrs)
    if run.ended_late:
        attributes[A.RUN_ENDED_LATE] = True
    record = RunRecord(
        framework=run.framework,
        span=run.run_name,
        status=status,
        error_type=error_type,
        start_unix=run.start_unix,
        end_unix=run.start_unix + window.duration_s if run.ended_late else time.time(),
        start_ns=opened.t_ns,
        end_ns=end_ns,
        window=window,
        devices=devices,
        samples=run.counters.run_samples,
        tokens=run.counters.run_tokens,
        pue=run.session.monitor.ledger.pue,
        segments=list(run.segments),
        attributes=attributes,
        projection=run.projector.latest,
        budget=run.projector.budget(),
        rank=run.rank.rank,
        local_rank=run.rank.local_rank,
        world_size=run.rank.world_size,
        project_name=config.project_name,
        experiment_description=config.experiment_description,
        history=run.session.monitor.history(),
    )
    if run.rank.host_name:
        record.host = run.rank.host_name
    record.notes.extend(run_notes(run, window))
    return record


def run_notes(run: Run, window: EnergyWindow) -> list[str]:
    """What a reader of the run's numbers must know, one line each."""
    # what discovery could not measure at all (the other discovery notes are in `doctor`)
    notes = [n for n in run.session.monitor.notes if "NOT MEASURED" in n]
    shared = shared_host_note(window)
    if shared is not None:
        notes.append(shared)
    if run.ended_late:
        notes.append(
            "training left this run without an end event (an exception caught outside the "
            "Trainer, or the process exiting): it was ended at its last training event"
        )
    return notes


def deliver_record(record: RunRecord, output_dir: Path) -> str:
    """Write the report files of ``record`` under ``output_dir`` (and print the summary table on
    global rank 0); the run's report directory."""
    written = write_run_report(record, output_dir, png=True)
    if record.rank == 0:
        print_summary(written.report)
        _LOG.info("hf-eco2ai: run report written to %s", written.directory)
    return str(written.directory)
