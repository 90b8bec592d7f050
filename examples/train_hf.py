"""The main job: a tiny BERT, built from a config (no Hub), trained on synthetic data on CPU.

Run it plain (``python examples/train_hf.py``), under auto-instrumentation
(``opentelemetry-instrument python examples/train_hf.py``) or with ``--instrument`` to call
``HFEco2AIInstrumentor().instrument()`` in code. ``make demo`` does the second with console
exporters, so it needs no server.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments


class SyntheticTextDataset(Dataset[dict[str, torch.Tensor]]):
    """Random token ids with a learnable label (whether token 1 appears in the first half)."""

    def __init__(self, size: int, seq_len: int = 32, vocab: int = 128, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(2, vocab, (size, seq_len), generator=gen)
        marks = torch.rand(size, generator=gen) < 0.5
        self.input_ids[marks, 3] = 1
        self.labels = marks.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.input_ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[i]}


def tiny_bert(vocab: int = 128) -> BertForSequenceClassification:
    """A 2-layer BERT with hidden size 32: ~100k parameters, a few ms per step on CPU."""
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def make_trainer(
    output_dir: str,
    *,
    train_size: int = 512,
    eval_size: int = 64,
    epochs: float = 2,
    batch_size: int = 8,
    max_steps: int = -1,
    callbacks: list[Any] | None = None,
    **args: Any,
) -> Trainer:
    """A Trainer for the tiny BERT on synthetic data (no network, no Hub)."""
    settings: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "logging_steps": 10,
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    settings.update(args)
    training_args = TrainingArguments(**settings)
    return Trainer(
        model=tiny_bert(),
        args=training_args,
        train_dataset=SyntheticTextDataset(train_size, seed=1),
        eval_dataset=SyntheticTextDataset(eval_size, seed=2),
        callbacks=callbacks,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--instrument", action="store_true", help="instrument in code")
    parser.add_argument("--output-dir", default=None)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("hf_eco2ai").setLevel(logging.INFO)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if ns.instrument:
        from hf_eco2ai import HFEco2AIInstrumentor

        HFEco2AIInstrumentor().instrument()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(ns.output_dir or tmp, epochs=ns.epochs, train_size=ns.train_size)
        trainer.train()


if __name__ == "__main__":
    main()
