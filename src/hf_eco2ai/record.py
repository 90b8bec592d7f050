"""What one finished run was: the data the run hands to every output.

A leaf data module: the run builds a :class:`RunRecord`, and the outputs
(:mod:`hf_eco2ai.outputs`) only format and write it. Nothing here does I/O.

Example:
    >>> from hf_eco2ai.record import RunRecord
    >>> [f for f in RunRecord.__dataclass_fields__][:3]
    ['framework', 'span', 'status']
"""

from __future__ import annotations

import platform
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hf_eco2ai.energy_ledger import History
from hf_eco2ai.energy_windows import EnergyWindow
from hf_eco2ai.projection import Projection
from hf_eco2ai.sensors.base import DeviceInfo


@dataclass(frozen=True, slots=True)
class Segment:
    """An epoch or evaluation window and when it happened (monotonic ns)."""

    kind: str
    index: int | None
    start_ns: int
    end_ns: int
    window: EnergyWindow


@dataclass(frozen=True, slots=True)
class DeviceTotal:
    """One device's energy over the run (raw, no PUE)."""

    info: DeviceInfo
    energy_j: float
    status: str
    errors: int


@dataclass
class RunRecord:
    """Everything about one finished run that a report needs (built by the run)."""

    framework: str
    span: str
    status: str
    error_type: str | None
    start_unix: float
    end_unix: float
    start_ns: int
    end_ns: int
    window: EnergyWindow
    devices: list[DeviceTotal]
    samples: int
    tokens: int
    pue: float
    segments: list[Segment] = field(default_factory=list)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    projection: Projection | None = None
    budget: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    host: str = field(default_factory=platform.node)
    project_name: str = "hf-eco2ai"
    experiment_description: str = ""
    history: History | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    notes: list[str] = field(default_factory=list)
    """What a reader must know about these numbers (a shared host, a run ended late...)."""
