"""Load the committed trained weights of the zoo's models."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from sample_models.architectures import build_architecture

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ACCURACY_FILE = WEIGHTS_DIR / "accuracy.json"
# The sample causal LM: a Hugging Face folder that ``train_lm.py`` writes.
TINYLM_DIR = WEIGHTS_DIR / "tinylm"


def weights_file(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def load_trained(name: str) -> nn.Module:
    """A zoo model in eval mode with its committed weights ("minilm" gives the embedder).

    >>> load_trained("mlp").training
    False
    """
    if name == "minilm":
        # Imported here so the digits models never pay for importing transformers.
        from sample_models.minilm import load_embedder

        return load_embedder()
    model = build_architecture(name)
    model.load_state_dict(load_file(weights_file(name)))
    return model.eval()


_DESCRIPTIONS = {
    "simplenet": "conv 1→10 k5, conv 10→20 k5, max-pool, fc 320→10 on 28×28 digits",
    "mlp": "MLP 64-256-128-10 on 8×8 digits",
    "bn_cnn": "CNN with BatchNorm and a residual block on 8×8 digits",
    "minilm": "all-MiniLM-L6-v2 sentence embedder (22.6M parameters), fidelity on a stdlib corpus",
    "tinylm": "Llama-style causal LM (1.2M parameters) trained on CPython's language reference",
}


def heldout_score(name: str) -> tuple[str, float] | None:
    """The metric ("accuracy" or "perplexity") the training scripts measured on held-out data, and
    its value; None for MiniLM (not trained here)."""
    if name not in _DESCRIPTIONS:
        raise ValueError(f"name must be one of {', '.join(map(repr, _DESCRIPTIONS))}; got {name!r}.")
    if name == "tinylm":
        return "perplexity", json.loads((TINYLM_DIR / "evaluation.json").read_text())["heldout_perplexity"]
    accuracy = json.loads(ACCURACY_FILE.read_text()).get(name)
    return None if accuracy is None else ("accuracy", accuracy)


def describe(name: str) -> str:
    """One line for listings: the architecture and its held-out accuracy (perplexity for tinylm)."""
    score = heldout_score(name)
    if score is None:
        return _DESCRIPTIONS[name]
    metric, value = score
    digits = 1 if metric == "perplexity" else 4
    return f"{_DESCRIPTIONS[name]}; held-out {metric} {value:.{digits}f}"
