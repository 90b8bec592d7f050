"""Inference and evaluation outside training, measured with ``hf_eco2ai.measure()``.

Two workloads, CPU only, offline, models built from configs:

* ``trainer.evaluate()`` and ``trainer.predict()`` on a Trainer that never trains (the tiny
  BERT of ``train_hf.py``), each in its own window;
* ``model.generate`` in a loop over prompt batches (a tiny GPT-2): the decorated function
  opens a fresh window per batch, and one window spans the whole loop, so the energy per
  generated token is known.

::

    python examples/inference.py
    python examples/inference.py --instrument    # windows share instrument()'s sampler
    opentelemetry-instrument python examples/inference.py   # spans to your exporter

``--result PATH`` writes every window's numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
from typing import Any

import torch
from train_hf import make_trainer
from transformers import GPT2Config, GPT2LMHeadModel

import hf_eco2ai

VOCAB = 128
PAD = 0


def evaluate_and_predict(output_dir: str, eval_size: int) -> dict[str, Any]:
    """``evaluate()`` and ``predict()`` without ``train()``, one window each."""
    trainer = make_trainer(output_dir, train_size=8, eval_size=eval_size)
    with hf_eco2ai.measure("inference.evaluate", examples=eval_size) as evaluation:
        metrics = trainer.evaluate()
    assert trainer.eval_dataset is not None
    with hf_eco2ai.measure("inference.predict", examples=eval_size) as prediction:
        predictions = trainer.predict(trainer.eval_dataset)  # type: ignore[arg-type]
    print(
        f"evaluate: loss {metrics['eval_loss']:.4f}, {evaluation.energy_j:.2f} J; "
        f"predict: {predictions.predictions.shape[0]} rows, {prediction.energy_j:.2f} J"
    )
    return {
        "evaluate": dataclasses.asdict(evaluation.result) if evaluation.result else None,
        "predict": dataclasses.asdict(prediction.result) if prediction.result else None,
        "predicted_rows": int(predictions.predictions.shape[0]),
    }


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
    )
    return GPT2LMHeadModel(config).eval()


@hf_eco2ai.measure("inference.generate.batch")
def generate_batch(model: GPT2LMHeadModel, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """One ``generate`` call: a fresh measurement window per call (the decorator's)."""
    with torch.no_grad():
        out: torch.Tensor = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=PAD,
        )
    return out


def generate_loop(batches: int, batch_size: int, new_tokens: int) -> dict[str, Any]:
    """``model.generate`` over prompt batches, measured per batch and as a whole."""
    model = tiny_gpt2()
    gen = torch.Generator().manual_seed(3)
    windows = []
    generated = 0
    with hf_eco2ai.measure("inference.generate", batches=batches) as loop:
        for _ in range(batches):
            prompts = torch.randint(3, VOCAB, (batch_size, 8), generator=gen)
            out = generate_batch(model, prompts, new_tokens)
            generated += int(out.shape[0] * (out.shape[1] - prompts.shape[1]))
            windows.append(generate_batch.window.result)  # type: ignore[attr-defined]
    print(
        f"generate: {generated} tokens in {batches} batches, {loop.energy_j:.2f} J, "
        f"{loop.energy_j / max(generated, 1):.5f} J/token, {loop.emissions_g * 1000:.3f} mg CO2e"
    )
    return {
        "generate": dataclasses.asdict(loop.result) if loop.result else None,
        "batches": [dataclasses.asdict(w) for w in windows if w is not None],
        "generated_tokens": generated,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
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
        with tempfile.TemporaryDirectory() as tmp:
            result = evaluate_and_predict(tmp, ns.eval_size)
        result.update(generate_loop(ns.batches, ns.batch_size, ns.new_tokens))
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
    if ns.result:
        with open(ns.result, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
