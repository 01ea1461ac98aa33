"""Train the sample causal LM ``tinylm`` reproducibly and record its held-out perplexity.

``python -m sample_models.train_lm`` rewrites ``sample_models/weights/tinylm/`` (a Hugging
Face folder: tokenizer, config, weights, ``evaluation.json``); with ``--check`` it rebuilds the
folder in a temporary directory and exits non-zero unless every file is byte-identical to the
committed one. The tokenizer is a byte-level BPE trained on the training topics of
``lm_text``; the model is a small Llama trained with AdamW from a fixed seed, on a fixed number
of threads, with deterministic kernels, so two runs write identical files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# Set before transformers is imported: it reads the variable once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from sample_models.lm_perplexity import perplexity, unigram_perplexity  # noqa: E402
from sample_models.lm_text import (  # noqa: E402
    heldout_topics, lm_heldout_text, lm_training_text, training_topics,
)
from sample_models.trained import TINYLM_DIR  # noqa: E402

SEED = 0
THREADS = 1
END_OF_TEXT = "<|endoftext|>"
VOCAB_SIZE = 2048
CONTEXT_LENGTH = 128
STEPS = 400
BATCH_SIZE = 16
PEAK_LR = 3e-3
WARMUP_STEPS = 30
WEIGHT_DECAY = 0.1
EVALUATION_FILE = "evaluation.json"


def make_deterministic() -> None:
    """Fix the global torch state that training results depend on."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(THREADS)


def train_tokenizer(text: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE of ``VOCAB_SIZE`` tokens learnt from ``text``, one document per line.

    Byte-level, so any text round-trips; ``END_OF_TEXT`` is its only special token (beginning,
    end and padding, as in GPT-2) and is never added by encoding.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(text.splitlines(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT, model_max_length=CONTEXT_LENGTH,
    )


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> torch.Tensor:
    """``text`` as one stream of token ids (int64), longer than any context."""
    return torch.tensor(tokenizer.backend_tokenizer.encode(text).ids, dtype=torch.int64)


def model_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """A Llama of about 1.2M parameters: 4 layers, 128 wide, grouped-query attention, tied head."""
    end_of_text = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=CONTEXT_LENGTH, tie_word_embeddings=True,
        bos_token_id=end_of_text, eos_token_id=end_of_text, pad_token_id=end_of_text,
        # What saving the model adds, so the config alone writes the committed config.json.
        architectures=["LlamaForCausalLM"], dtype="float32",
    )


def _learning_rate_factor(step: int) -> float:
    """Linear warm-up to ``PEAK_LR``, then cosine decay to a tenth of it at ``STEPS``."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / (STEPS - WARMUP_STEPS)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train(config: LlamaConfig, training_ids: torch.Tensor, steps: int = STEPS) -> LlamaForCausalLM:
    """A seeded model trained on seeded random windows of ``training_ids``, in eval mode."""
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=PEAK_LR, betas=(0.9, 0.95), weight_decay=WEIGHT_DECAY
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _learning_rate_factor)
    offsets = torch.arange(CONTEXT_LENGTH)
    model.train()
    for _ in range(steps):
        starts = torch.randint(
            len(training_ids) - CONTEXT_LENGTH + 1, (BATCH_SIZE, 1), generator=generator
        )
        batch = training_ids[starts + offsets]
        optimizer.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model.eval()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build(folder: Path) -> dict[str, object]:
    """Train the tokenizer and the model and write the whole folder; returns the evaluation."""
    training_text, heldout_text = lm_training_text(), lm_heldout_text()
    tokenizer = train_tokenizer(training_text)
    training_ids, heldout_ids = encode(tokenizer, training_text), encode(tokenizer, heldout_text)
    config = model_config(tokenizer)
    model = train(config, training_ids)
    evaluation = {
        "protocol": "sample_models.lm_perplexity: stride = context length; every token after "
                    "the first in each window counts once",
        "context_length": CONTEXT_LENGTH,
        "heldout_perplexity": perplexity(model, heldout_ids, CONTEXT_LENGTH),
        "unigram_perplexity": unigram_perplexity(
            training_ids, heldout_ids, config.vocab_size, CONTEXT_LENGTH
        ),
        "uniform_perplexity": float(config.vocab_size),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_topics": list(training_topics()),
        "heldout_topics": list(heldout_topics()),
        "training_characters": len(training_text),
        "heldout_characters": len(heldout_text),
        "training_tokens": len(training_ids),
        "heldout_tokens": len(heldout_ids),
        "training_text_sha256": _sha256(training_text),
        "heldout_text_sha256": _sha256(heldout_text),
    }
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    (folder / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def differences(built: Path, committed: Path) -> list[str]:
    """Files that are missing, extra or not byte-identical between two folders."""
    names = sorted({p.name for p in built.iterdir()} | {p.name for p in committed.iterdir()})
    return [
        f"{committed / name}: differs from the rebuilt file"
        for name in names
        if not (built / name).is_file() or not (committed / name).is_file()
        or (built / name).read_bytes() != (committed / name).read_bytes()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true",
        help="rebuild in a temporary folder and fail unless every file matches the committed one",
    )
    args = parser.parse_args(argv)
    make_deterministic()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "tinylm" if args.check else TINYLM_DIR
        start, start_cpu = time.perf_counter(), time.process_time()
        evaluation = build(folder)
        # CPU time as well: on a shared machine the wall-clock time says more about the others.
        print(f"tinylm: held-out perplexity {evaluation['heldout_perplexity']:.2f} "
              f"(unigram {evaluation['unigram_perplexity']:.2f}, "
              f"uniform {evaluation['uniform_perplexity']:.0f}; "
              f"{time.perf_counter() - start:.1f} s, {time.process_time() - start_cpu:.1f} s CPU)")
        problems = differences(folder, TINYLM_DIR) if args.check else []
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
