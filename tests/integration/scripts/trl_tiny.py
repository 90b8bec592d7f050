"""Tiny TRL trainers (SFT, DPO, reward) on synthetic text, with no Hugging Face Hub access.

The tokenizer is a word-level one trained here with the ``tokenizers`` library; the models are
built from configs (a 1-layer GPT-2). Every example of a dataset has the same token length, so
the number of ``input_ids`` elements a run processes is known from the dataset alone.

Run as a script (``python trl_tiny.py sft OUTPUT_DIR RESULT_JSON``) it trains the SFT model
once and writes what it knows (dataset size, sequence length, steps) to ``RESULT_JSON``; the
integration test runs it under ``opentelemetry-instrument``. ``trl`` and ``datasets`` are
imported only by the builders, so collecting this file needs neither.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
EXAMPLES = 16
BATCH = 4
EPOCHS = 2


def sentence(i: int, n: int) -> str:
    """``n`` words, deterministic in ``i``."""
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on the synthetic corpus, with pad/bos/eos/unk tokens."""
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    tok.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=special))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )


def gpt2_config(tok: PreTrainedTokenizerFast, **extra: Any) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tok),
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=2,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **extra,
    )


def common_args(output_dir: str) -> dict[str, Any]:
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": BATCH,
        "num_train_epochs": EPOCHS,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 42,
        "disable_tqdm": True,
        "max_length": 16,
        "dataloader_num_workers": 0,
    }


def sft_trainer(output_dir: str, **kwargs: Any) -> Any:
    """SFT on ``EXAMPLES`` sentences of 5 words (6 tokens with EOS)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(tok))
    data = Dataset.from_dict({"text": [sentence(i, 5) for i in range(EXAMPLES)]})
    return SFTTrainer(
        model=model,
        args=SFTConfig(**common_args(output_dir)),
        train_dataset=data,
        processing_class=tok,
        **kwargs,
    )


def dpo_trainer(output_dir: str, **kwargs: Any) -> Any:
    """DPO on ``EXAMPLES`` (prompt, chosen, rejected) triples of 3 + 2 + 2 words."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok = tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(tok))
    data = Dataset.from_dict(
        {
            "prompt": [sentence(i, 3) for i in range(EXAMPLES)],
            "chosen": [" " + sentence(i + 1, 2) for i in range(EXAMPLES)],
            "rejected": [" " + sentence(i + 2, 2) for i in range(EXAMPLES)],
        }
    )
    return DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # no Hub: the reference is a copy of the start point
        args=DPOConfig(**common_args(output_dir)),
        train_dataset=data,
        processing_class=tok,
        **kwargs,
    )


def reward_trainer(output_dir: str, **kwargs: Any) -> Any:
    """Reward modelling on ``EXAMPLES`` (chosen, rejected) pairs of 5-word sentences."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    tok = tokenizer()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(gpt2_config(tok, num_labels=1))
    data = Dataset.from_dict(
        {
            "chosen": [sentence(i, 5) for i in range(EXAMPLES)],
            "rejected": [sentence(i + 3, 5) for i in range(EXAMPLES)],
        }
    )
    return RewardTrainer(
        model=model,
        args=RewardConfig(**common_args(output_dir)),
        train_dataset=data,
        processing_class=tok,
        **kwargs,
    )


BUILDERS = {"sft": sft_trainer, "dpo": dpo_trainer, "reward": reward_trainer}

# Per example of the dataset: the sequences a training batch holds (DPO and reward batches
# stack the chosen and the rejected sequence of each pair) and the processed columns whose
# lengths add up to one sequence.
ROWS_PER_EXAMPLE = {"sft": 1, "dpo": 2, "reward": 2}
LENGTH_COLUMNS = {
    "sft": ("input_ids",),
    "dpo": ("prompt_ids", "chosen_ids"),
    "reward": ("chosen_ids",),
}


def sequence_length(kind: str, trainer: Any) -> int:
    """The token length of every sequence of the processed training set (asserted uniform)."""
    dataset = trainer.train_dataset
    lengths = {
        sum(len(row[c]) for c in LENGTH_COLUMNS[kind])
        for row in dataset  # chosen and rejected have equal lengths by construction
    }
    if kind != "sft":
        other = "rejected_ids"
        lengths |= {
            sum(len(row[c]) for c in LENGTH_COLUMNS[kind][:-1]) + len(row[other]) for row in dataset
        }
    if len(lengths) != 1:
        raise AssertionError(f"sequences of unequal length: {sorted(lengths)}")
    return lengths.pop()


def main(argv: list[str]) -> None:
    kind, output_dir, result_path = argv
    trainer = BUILDERS[kind](output_dir)
    length = sequence_length(kind, trainer)
    trainer.train()
    result = {
        "examples": EXAMPLES,
        "epochs": EPOCHS,
        "rows_per_example": ROWS_PER_EXAMPLE[kind],
        "length": length,
        "global_step": trainer.state.global_step,
    }
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
