"""A process whose GPU driver wedges mid-run: one fake GPU's energy call never returns.

``--mode exit``: the run is left open and the monitor running; the interpreter's exit handlers
(the run lifecycle, then the sampler's) must end the run, write its report and return.
``--mode close``: the run is ended and the monitor closed explicitly (what ``uninstrument()``
does), then the process exits. ``--wait-stalled`` waits for the sampler's watchdog to mark the
GPU stalled first. Prints ``HUNG`` once the driver call is blocked and ``DONE`` before exiting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

KEEP: list[object] = []
"""The run and monitor stay referenced until exit, as a training callback keeps them."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--mode", choices=("exit", "close"), required=True)
    parser.add_argument("--wait-stalled", action="store_true")
    ns = parser.parse_args()

    from tests.fakes.fake_nvml import FakeGpu, FakeNVML

    from hf_eco2ai import CarbonConfig
    from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
    from hf_eco2ai.energy_monitor import EnergyMonitor
    from hf_eco2ai.run import Run
    from hf_eco2ai.sensors.nvml import NvmlSensor
    from hf_eco2ai.telemetry.session import TelemetrySession

    fake = FakeNVML(
        [
            FakeGpu("GPU-00000000-1111-2222-3333-444444444444", power_w=200.0),
            FakeGpu("GPU-00000001-1111-2222-3333-444444444444", power_w=100.0),
        ],
        real_time=True,
    )
    sensor = NvmlSensor.create(nvml=fake, environ={})
    assert sensor is not None
    config = CarbonConfig(sample_interval=0.1, output_dir=ns.output_dir, write_report=True)
    monitor = EnergyMonitor(
        config, sensors=[sensor], intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "t"))
    )
    monitor.start()
    run = Run(TelemetrySession(config, monitor=monitor), "test", "test.trainer")
    run.begin({})
    KEEP.extend([run, monitor])
    time.sleep(0.3)
    fake.hang(1, {"nvmlDeviceGetTotalEnergyConsumption"})
    if not fake.hung.wait(30):
        raise SystemExit("the fake driver call never blocked")
    print("HUNG", flush=True)
    if ns.wait_stalled:
        deadline = time.monotonic() + 30
        while monitor.snapshot().devices[1].status != "stalled":
            if time.monotonic() > deadline:
                raise SystemExit("the watchdog never marked the GPU stalled")
            time.sleep(0.05)
    if ns.mode == "close":
        run.finish({})
        monitor.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
