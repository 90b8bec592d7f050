"""A minimal Lightning run: the tiny BERT of ``examples/train_hf.py`` as a ``LightningModule``.

The same model, data, batch size and optimizer family as the Trainer run, so the two framework
rows of ``benchmarks/overhead.py`` are comparable. No logger, checkpoint, progress bar or model
summary: only the training loop (and one short validation pass at the end of the epoch).

Run alone: ``python benchmarks/tiny_lightning.py [--train-size 2048]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from train_hf import SyntheticTextDataset, tiny_bert


class TinyBertModule(L.LightningModule):
    """``BertForSequenceClassification`` (2 layers, hidden 32) trained with AdamW."""

    def __init__(self, lr: float = 5e-5) -> None:
        super().__init__()
        self.model = tiny_bert()
        self.lr = lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimizer step's loss."""
        loss: torch.Tensor = self.model(**batch).loss
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation loss, logged per epoch."""
        self.log("val_loss", self.model(**batch).loss, batch_size=int(batch["labels"].shape[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW, as the Trainer uses."""
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def make_lightning(
    train_size: int = 512, eval_size: int = 8, batch_size: int = 8, **trainer_args: Any
) -> tuple[L.Trainer, TinyBertModule, DataLoader[Any], DataLoader[Any]]:
    """A Lightning ``Trainer``, the module and its loaders (CPU, quiet, one epoch)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings: dict[str, Any] = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    settings.update(trainer_args)
    trainer = L.Trainer(**settings)
    train = DataLoader(
        SyntheticTextDataset(train_size, seed=1), batch_size=batch_size, shuffle=True
    )
    val = DataLoader(SyntheticTextDataset(eval_size, seed=2), batch_size=batch_size)
    return trainer, TinyBertModule(), train, val


def main(argv: list[str] | None = None) -> int:
    """Train once and print the wall time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-size", type=int, default=2048)
    ns = parser.parse_args(argv)
    torch.set_num_threads(1)
    trainer, module, train, val = make_lightning(ns.train_size)
    t0 = time.perf_counter()
    trainer.fit(module, train, val)
    print(f"lightning: {ns.train_size // 8} steps in {time.perf_counter() - t0:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
