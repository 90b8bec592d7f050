"""One rank of a distributed test job; run by ``torchrun`` from ``tests/integration/test_ddp.py``.

Builds SDK providers with in-memory exporters, sets them as the *global* providers (the
"provider already built" case: identity goes on every span and data point) or, with
``--resource``, builds them on :func:`hf_eco2ai.distributed.distributed_resource`. Instruments,
trains on CPU with gloo (the HF Trainer or Lightning DDP), and writes what this rank exported to
``<out>/rank-<RANK>.json``.

``--fake-gpu`` adds one synthetic 100 W GPU per rank (``GPU-fake-<local rank>``) to the real
sensor discovery, so every rank measures something and "each rank measures the GPU it owns"
is visible on a machine without GPUs; CPU and RAM come from the real discovery (local rank 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(REPO), str(REPO / "examples")]

import torch  # noqa: E402
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor  # noqa: E402
from hf_eco2ai import energy_monitor as monitor_module  # noqa: E402
from hf_eco2ai.distributed import distributed_resource, rank_info  # noqa: E402
from hf_eco2ai.energy_monitor import EnergyMonitor  # noqa: E402
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading  # noqa: E402

FAKE_GPU_W = 100.0


class FakeGpu:
    """One synthetic GPU with a constant power and an exact energy counter."""

    def __init__(self, local_rank: int) -> None:
        self._info = DeviceInfo(
            f"GPU-fake-{local_rank}", HwType.GPU, "Fake GPU", "NVIDIA", Method.NVML_ENERGY
        )
        self._t0 = time.monotonic()

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return (self._info,)

    def read(self, index: int) -> Reading:
        return Reading(power_w=FAKE_GPU_W, energy_j=FAKE_GPU_W * (time.monotonic() - self._t0))

    def close(self) -> None:
        pass


def with_fake_gpu(config: CarbonConfig, local_rank: int) -> EnergyMonitor:
    from hf_eco2ai.sensors.discovery import discover_sensors

    found = discover_sensors(config.replace(track_gpu=False), local_rank=local_rank)
    return EnergyMonitor(
        config,
        sensors=[*found.sensors, FakeGpu(local_rank)],
        notes=found.notes,
        local_rank=local_rank,
    )


def train_hf(tmp: str) -> None:
    from train_hf import make_trainer

    trainer = make_trainer(tmp, train_size=32, eval_size=16, epochs=1, batch_size=4)
    trainer.train()


def train_lightning(devices: int | None) -> None:
    import lightning.pytorch as L
    from torch.utils.data import DataLoader, Dataset

    class Tokens(Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return 32

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            gen = torch.Generator().manual_seed(i)
            return {
                "input_ids": torch.randint(0, 64, (16,), generator=gen),
                "labels": torch.tensor(i % 2),
            }

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.EmbeddingBag(64, 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.head(self.emb(batch["input_ids"]))

        def training_step(self, batch: dict[str, torch.Tensor], idx: int) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(self(batch), batch["labels"])

        def validation_step(self, batch: dict[str, torch.Tensor], idx: int) -> None:
            loss = torch.nn.functional.cross_entropy(self(batch), batch["labels"])
            self.log("val_loss", loss, sync_dist=True)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    if devices is None:  # under torchrun
        local_world = int(os.environ["LOCAL_WORLD_SIZE"])
        nodes = int(os.environ["WORLD_SIZE"]) // local_world
    else:  # Lightning launches the other ranks itself (re-running this script)
        local_world, nodes = devices, 1
    trainer = L.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=local_world,
        num_nodes=nodes,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), DataLoader(Tokens(), batch_size=4), DataLoader(Tokens(), batch_size=4))


def _value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def dump(
    path: Path, exporter: InMemorySpanExporter, reader: InMemoryMetricReader, resource: Resource
) -> None:
    spans = [
        {
            "name": s.name,
            "span_id": s.context.span_id,
            "parent_id": s.parent.span_id if s.parent else None,
            "status": s.status.status_code.name,
            "attributes": {k: _value(v) for k, v in (s.attributes or {}).items()},
        }
        for s in exporter.get_finished_spans()
    ]
    data = reader.get_metrics_data()
    points: dict[str, list[dict[str, Any]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    points.setdefault(m.name, []).append(
                        {"attributes": dict(p.attributes or {}), "value": getattr(p, "value", None)}
                    )
    env = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    payload = {
        "env": env,
        "rank_info": dataclasses.asdict(rank_info()),
        "resource": {k: _value(v) for k, v in resource.attributes.items()},
        "spans": spans,
        "metrics": points,
    }
    path.write_text(json.dumps(payload, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=("hf", "lightning"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resource", action="store_true", help="build providers on our Resource")
    parser.add_argument("--fake-gpu", action="store_true")
    parser.add_argument("--devices", type=int, help="Lightning launches this many ranks itself")
    ns = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("hf_eco2ai").setLevel(logging.INFO)
    torch.set_num_threads(1)

    resource = distributed_resource() if ns.resource else Resource.create()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    if ns.fake_gpu:
        monitor_module.set_monitor_factory(with_fake_gpu)

    instrumentor = HFEco2AIInstrumentor()
    instrumentor.instrument(config=CarbonConfig.from_env())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if ns.framework == "hf":
                train_hf(tmp)
            else:
                train_lightning(ns.devices)
        rank = rank_info().rank  # torch.distributed is still initialised
        dump(Path(ns.out) / f"rank-{rank}.json", exporter, reader, resource)
    finally:
        instrumentor.uninstrument()


if __name__ == "__main__":
    main()
