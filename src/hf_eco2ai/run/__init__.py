"""The run: the one place where a training run begins, is windowed, budgeted, ended and reported.

Framework adapters (:mod:`hf_eco2ai.integrations`) translate their events into :class:`Run`
calls; the run hands spans to :mod:`hf_eco2ai.telemetry` and a finished record to the outputs.
"""

from hf_eco2ai.outputs.summary import summary_line
from hf_eco2ai.run.batches import batch_size_and_tokens, parameter_count
from hf_eco2ai.run.counters import RunCounters
from hf_eco2ai.run.registry import InstrumentationRemoved, RunNotEnded, end_open_runs, open_runs
from hf_eco2ai.run.run import Run

__all__ = [
    "InstrumentationRemoved",
    "Run",
    "RunCounters",
    "RunNotEnded",
    "batch_size_and_tokens",
    "end_open_runs",
    "open_runs",
    "parameter_count",
    "summary_line",
]
