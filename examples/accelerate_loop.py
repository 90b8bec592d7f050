"""A custom Accelerate training loop measured with ``hf_eco2ai.measure()``, on every rank.

A tiny BERT built from a config (no Hub) on synthetic data; the whole run and each epoch are
measurement windows. Launch it with two processes on a machine without GPUs::

    accelerate launch --multi_gpu --num_processes 2 examples/accelerate_loop.py
    python examples/accelerate_loop.py          # one process works too

(With accelerate 1.x, ``--cpu --num_processes 2`` starts two processes only through MPI, with
``--mpirun_hostfile``; without it one process runs. ``--multi_gpu`` uses torchrun, and the
script builds ``Accelerator(cpu=True)`` when no CUDA device is present, so the processes talk
over gloo.)

Each rank measures its own devices, as the distributed policy says (docs/distributed.md): the
GPUs it owns, and the host's CPU and RAM on local rank 0 only (``accelerate launch`` sets
``LOCAL_RANK``, which the first window reads). Summing the ranks' windows therefore counts
every device once: the job total that rank 0 prints is that sum, gathered with
``accelerator.gather``. ``--result-dir DIR`` writes each rank's windows to
``DIR/rank-<RANK>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from train_hf import SyntheticTextDataset, tiny_bert

import hf_eco2ai
from hf_eco2ai.distributed import rank_info


def train(accelerator: Accelerator, epochs: int, size: int, batch_size: int) -> dict[str, Any]:
    """Train with ``accelerator``; every window of this rank, as plain data."""
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(SyntheticTextDataset(size, seed=1), batch_size=batch_size, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    rank = accelerator.process_index
    epoch_windows = []
    samples = 0
    with hf_eco2ai.measure("accelerate.train", epochs=epochs) as run:
        for epoch in range(epochs):
            model.train()
            with hf_eco2ai.measure("accelerate.epoch", epoch=epoch) as window:
                for batch in loader:
                    loss = model(**batch).loss
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                    samples += int(batch["input_ids"].shape[0])
            epoch_windows.append(window.result)
            print(
                f"[rank {rank}] epoch {epoch}: {window.energy_j:.2f} J, "
                f"{window.emissions_g * 1000:.3f} mg CO2e, devices {sorted(window.devices)}",
                flush=True,
            )
    # job totals: every device was measured by exactly one rank, so the sum is the job's
    mine = torch.tensor([run.energy_j, run.emissions_g, float(samples)], dtype=torch.float64)
    job = accelerator.gather(mine.unsqueeze(0)).sum(dim=0)
    if accelerator.is_main_process:
        print(
            f"job ({accelerator.num_processes} ranks): {job[0]:.2f} J, "
            f"{job[1] * 1000:.3f} mg CO2e, {int(job[2])} samples, "
            f"{job[0] / max(job[2], 1):.4f} J/sample",
            flush=True,
        )
    info = rank_info()
    return {
        "rank": rank,
        "local_rank": info.local_rank,
        "world_size": accelerator.num_processes,
        "samples": samples,
        "run": dataclasses.asdict(run.result) if run.result else None,
        "epochs": [dataclasses.asdict(w) for w in epoch_windows if w is not None],
        "job": {"energy_j": float(job[0]), "emissions_g": float(job[1]), "samples": int(job[2])},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="training examples")
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--cpu", action="store_true", help="train on CPU even with GPUs")
    parser.add_argument("--result-dir", default=None)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=ns.cpu or not torch.cuda.is_available())
    result = train(accelerator, ns.epochs, ns.size, ns.batch_size)
    if ns.result_dir:
        out = Path(ns.result_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank-{result['rank']}.json").write_text(json.dumps(result, indent=1))
    accelerator.end_training()
    if os.environ.get("HF_ECO2AI_EXAMPLE_VERBOSE"):
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
