"""Model families: what a model is, told from its file, and so which metric scores it.

A Hugging Face folder's family comes from its ``config.json`` through transformers' own Auto
mappings (GPT-2's class is ``GPT2LMHeadModel``: no name suffix says "causal LM"); a graph's
(.pt2, ONNX, TorchScript) from the shapes of its example inputs and outputs. ``--family``
(``load_model(..., family=...)``) overrides either.

>>> graph_family((torch.zeros(2, 3, 32, 32),), torch.zeros(2, 10))
'image_classifier'
>>> graph_family((torch.zeros(2, 16, dtype=torch.int64),), torch.zeros(2, 16, 50))
'causal_lm'
"""
from __future__ import annotations

from typing import Any

import torch

from compression.errors import ModelLoadError
from compression.metrics import (
    ACCURACY,
    AGREEMENT,
    COSINE,
    NEXT_TOKEN_AGREEMENT,
    OUTPUT_COSINE,
    PERPLEXITY,
)

TEXT_ENCODER = "text_encoder"
CAUSAL_LM = "causal_lm"
SEQ2SEQ = "seq2seq"
IMAGE_CLASSIFIER = "image_classifier"
CLASSIFIER = "classifier"  # any other N × K classifier (tabular rows, flattened images)
OTHER = "other"  # detectors, audio, multi-input graphs: fidelity of every output
FAMILIES = (TEXT_ENCODER, CAUSAL_LM, SEQ2SEQ, IMAGE_CLASSIFIER, CLASSIFIER, OTHER)

# The metric of each family: with real data (labels, text), and without (generated inputs).
METRIC_WITH_DATA = {
    TEXT_ENCODER: COSINE, CAUSAL_LM: PERPLEXITY, SEQ2SEQ: PERPLEXITY,
    IMAGE_CLASSIFIER: ACCURACY, CLASSIFIER: ACCURACY, OTHER: OUTPUT_COSINE,
}
METRIC_WITHOUT_DATA = {
    TEXT_ENCODER: COSINE, CAUSAL_LM: NEXT_TOKEN_AGREEMENT, SEQ2SEQ: NEXT_TOKEN_AGREEMENT,
    IMAGE_CLASSIFIER: AGREEMENT, CLASSIFIER: AGREEMENT, OTHER: OUTPUT_COSINE,
}


def check_family(family: str | None) -> None:
    """Refuse a family name that is not one of ``FAMILIES`` (None: detect it)."""
    if family is not None and family not in FAMILIES:
        raise ModelLoadError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}.")


def hf_family(config: Any) -> str:
    """The family of a Hugging Face model by its config: the class it was saved as
    (``architectures``), looked up in transformers' task mappings, else its model type."""
    from transformers.models.auto import modeling_auto

    tasks = (
        (CAUSAL_LM, modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
        (SEQ2SEQ, modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES),
        (IMAGE_CLASSIFIER, modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES),
    )
    for architecture in getattr(config, "architectures", None) or ():
        for family, mapping in tasks:
            if architecture in _class_names(mapping):
                return family
    # A base model (BertModel, ViTModel) or a head of another task: no task metric applies.
    if getattr(config, "is_encoder_decoder", False) and not getattr(config, "architectures", None):
        return SEQ2SEQ
    return TEXT_ENCODER if getattr(config, "vocab_size", None) is not None else OTHER


def graph_family(example_inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> str:
    """The family of a graph that records no config, from its example inputs and first output.

    Token ids in, one row per token out is a causal LM only if each row can score every id
    (logits over the vocabulary): a text encoder's hidden states are narrower than the ids it
    reads (BERT: 768 wide, ids up to 30,521), so it is ``other``.

    >>> graph_family((torch.tensor([[5, 99]]),), torch.zeros(1, 2, 32))
    'other'
    """
    single = len(example_inputs) == 1
    tokens = bool(example_inputs) and not example_inputs[0].is_floating_point() and example_inputs[0].ndim == 2
    if tokens and output.ndim == 3 and output.shape[:2] == example_inputs[0].shape:
        scores_every_id = example_inputs[0].numel() == 0 or output.shape[2] > int(example_inputs[0].max())
        return CAUSAL_LM if scores_every_id else OTHER
    if output.ndim == 2 and output.shape[1] >= 2 and single and example_inputs[0].is_floating_point():
        return IMAGE_CLASSIFIER if example_inputs[0].ndim == 4 else CLASSIFIER
    return OTHER


def _class_names(mapping: Any) -> set[str]:
    names: set[str] = set()
    for value in mapping.values():
        names.update(value if isinstance(value, (tuple, list)) else (value,))
    return names
