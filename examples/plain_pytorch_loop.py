"""A hand-written PyTorch training loop measured with ``hf_eco2ai.measure()``.

No Trainer, no Lightning: the whole run and each epoch are measurement windows, each a span
with its own energy and CO2e (nested: the epochs under the run). Runs on CPU, offline::

    python examples/plain_pytorch_loop.py --epochs 2
    python examples/plain_pytorch_loop.py --instrument     # windows share instrument()'s sampler
    opentelemetry-instrument python examples/plain_pytorch_loop.py   # spans to your exporter

Without ``instrument()`` the first window starts the measurement and the last one stops it.
``--result PATH`` writes every window's numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import hf_eco2ai


class Blobs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Two Gaussian blobs in 16 dimensions: a learnable binary task."""

    def __init__(self, size: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.y = (torch.rand(size, generator=gen) < 0.5).long()
        self.x = torch.randn(size, 16, generator=gen) + self.y[:, None].float() * 1.5

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))


def train(epochs: int, size: int, batch_size: int = 32) -> dict[str, Any]:
    """Train, measuring the run and each epoch; returns every window's numbers."""
    model = tiny_mlp()
    loader = DataLoader(Blobs(size), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    epoch_windows = []
    with hf_eco2ai.measure("pytorch.train", epochs=epochs, samples=size) as run:
        for epoch in range(epochs):
            with hf_eco2ai.measure("pytorch.epoch", epoch=epoch) as window:
                total = 0.0
                for x, y in loader:
                    optimizer.zero_grad()
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(y)
            epoch_windows.append(window.result)
            print(
                f"epoch {epoch}: loss {total / size:.4f}, {window.energy_j:.2f} J, "
                f"{window.emissions_g * 1000:.3f} mg CO2e in {window.duration_s:.2f} s"
            )
    print(
        f"run: {run.energy_j:.2f} J, {run.emissions_g * 1000:.3f} mg CO2e, "
        f"{run.energy_j / (size * epochs):.5f} J/sample, devices {dict(run.devices)}"
    )
    return {
        "run": dataclasses.asdict(run.result) if run.result else None,
        "epochs": [dataclasses.asdict(w) for w in epoch_windows if w is not None],
        "samples": size * epochs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--instrument", action="store_true", help="instrument() in code first")
    parser.add_argument("--result", default=None, help="write the windows' numbers here (JSON)")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    instrumentor = None
    if ns.instrument:
        instrumentor = hf_eco2ai.HFEco2AIInstrumentor()
        instrumentor.instrument()
    try:
        result = train(ns.epochs, ns.size)
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
    if ns.result:
        with open(ns.result, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
