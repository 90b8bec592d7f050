"""A finished run for output tests, built directly (no training): a known 2 s run."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from hf_eco2ai.energy_ledger import History
from hf_eco2ai.energy_windows import EnergyWindow
from hf_eco2ai.record import DeviceTotal, RunRecord
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method

CPU = DeviceInfo("cpu", HwType.CPU, "Test CPU", "test", Method.TDP_MODEL)


def record(
    run_id: str | None = None,
    start_unix: float = 1_700_000_000.0,
    samples_s: Sequence[float] | None = None,
) -> RunRecord:
    """A finished 2 s run at 50 W on one modelled CPU (100 J, 100 g/kWh).

    ``samples_s``: when the sampler read the devices (seconds since the run's start; default
    every 0.1 s from 0 to 2 s).
    """
    window = EnergyWindow(
        duration_s=2.0,
        energy_j=100.0,
        energy_low_j=25.0,
        energy_high_j=175.0,
        emissions_g=100.0 / 3.6e6 * 100.0,
        energy_by_type={"cpu": 100.0},
        emissions_by_type={"cpu": 100.0 / 3.6e6 * 100.0},
        mean_intensity=100.0,
        zone="XX",
        source="config",
        methods=("tdp-model",),
        extrapolated=False,
    )
    if samples_s is None:
        t = np.arange(0, 2_100_000_000, 100_000_000, dtype=np.int64)
    else:
        t = np.array([round(x * 1e9) for x in samples_s], dtype=np.int64)
    history = History(
        devices=(CPU,),
        t_ns=t,
        power_w=np.full((t.size, 1), 50.0),
        energy_j=t.astype(np.float64) / 1e9 * 50.0,
        intensity=np.full(t.size, 100.0),
    )
    return RunRecord(
        framework="test",
        span="test.run",
        status="ok",
        error_type=None,
        start_unix=start_unix,
        end_unix=start_unix + 2.0,
        start_ns=0,
        end_ns=2_000_000_000,
        window=window,
        devices=[DeviceTotal(CPU, 100.0, "ok", 0)],
        samples=16,
        tokens=0,
        pue=1.0,
        history=history,
        run_id=run_id or uuid.uuid4().hex,
    )
