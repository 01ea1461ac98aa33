"""Load the committed trained weights of the zoo's models."""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from sample_models.architectures import build_architecture

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ACCURACY_FILE = WEIGHTS_DIR / "accuracy.json"


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
