"""How the dashboard names a model: the cache key of everything computed from it.

A sample model goes by its zoo name (``mlp``), an upload by ``upload/<hash>/<file>`` and a
model with its BatchNorm layers folded by ``folded/<id of the model it was folded from>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sample_models

DEFAULT_MODEL = "simplenet"
UPLOAD_PREFIX = "upload/"
FOLDED_PREFIX = "folded/"  # a model with its BatchNorm layers folded: "folded/bn_cnn"


@dataclass(frozen=True)
class ModelChoice:
    """The model and evaluation data a session works on, as cache keys."""

    model_id: str
    data_id: str | None

    @property
    def label(self) -> str:
        if self.model_id.startswith(FOLDED_PREFIX):
            return f"{Path(ModelChoice(self.model_id.removeprefix(FOLDED_PREFIX), None).label).stem}-bn-folded"
        return self.model_id.removeprefix(UPLOAD_PREFIX).split("/", 1)[-1]


def linkable(model_id: str) -> bool:
    """Whether a link can name the model: a sample model, or one with its BatchNorm folded
    (uploads live in their session only)."""
    return model_id.removeprefix(FOLDED_PREFIX) in sample_models.ZOO_NAMES
