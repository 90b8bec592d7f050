"""What the GPU and RAPL sensors share while they look for devices: the rank's device choice and
the one-line note that says what was found.

Each vendor's sensor (:mod:`~hf_eco2ai.sensors.nvml`, :mod:`~hf_eco2ai.sensors.amdsmi`) finds
its devices its own way; the rules below are the same for all of them, so they live here once.

Example:
    >>> one_device_per_rank(["gpu0", "gpu1"], local_rank=1, local_world_size=2, api="CUDA")
    (['gpu1'], '; 2 local ranks each see 2 GPUs: local rank 1 measures CUDA device 1 only')
    >>> one_device_per_rank(["gpu0", "gpu1"], local_rank=0, local_world_size=4, api="CUDA") is None
    True
    >>> note_suffix(["a", "b"])
    ' [a; b]'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from hf_eco2ai.sensors.base import DeviceInfo

__all__ = ["devices_note", "no_sensor", "note_suffix", "one_device_per_rank"]

T = TypeVar("T")


def note_suffix(notes: Sequence[str]) -> str:
    """``" [a; b]"`` for the side notes of a discovery, ``""`` when there are none."""
    return "" if not notes else " [" + "; ".join(notes) + "]"


def one_device_per_rank(
    visible: Sequence[T],
    *,
    local_rank: int | None,
    local_world_size: int | None,
    api: str,
) -> tuple[list[T], str] | None:
    """The one device of this rank when several local ranks each see the same N devices
    (N == the local world size), so that a node's GPUs are not counted once per rank; with the
    words that say so. ``None`` when that rule does not apply (measure every visible device)."""
    if (
        local_rank is None
        or local_world_size is None
        or local_world_size <= 1
        or len(visible) != local_world_size
        or not 0 <= local_rank < len(visible)
    ):
        return None
    return [visible[local_rank]], (
        f"; {local_world_size} local ranks each see {len(visible)} GPUs:"
        f" local rank {local_rank} measures {api} device {local_rank} only"
    )


def devices_note(vendor: str, devices: Sequence[DeviceInfo], how: str, notes: Sequence[str]) -> str:
    """The one line a GPU sensor logs when it starts: each device, its method and its note."""
    summary = "; ".join(f"{d.hw_id} ({d.name}): {d.method.value}, {d.note}" for d in devices)
    return f"{vendor}: {len(devices)} GPU(s) via {how}: {summary}" + note_suffix(notes)


def no_sensor(note: str, log: logging.Logger) -> tuple[None, str]:
    """No sensor, and why: logged at INFO on ``log`` (finding no GPU is normal), returned for
    ``doctor``."""
    log.info("%s", note)
    return None, note
